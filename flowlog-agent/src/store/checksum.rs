//! A CRC-32 over every byte of a Logstore file before its footer, kept in
//! the footer's key-value metadata ([`KEY`]: `<bytes>:<crc>`). Parquet
//! readers check a page's checksum only if the writer stored one, and this
//! writer stores none; without a check of our own, a flipped bit in a
//! counter column reads back as a wrong sum with nothing to say so. Files
//! without the key (written by another tool, or before it existed) are read
//! as they are.

use std::{fs::File, io::Read, path::Path};

use datafusion::parquet::file::{
    metadata::KeyValue, reader::FileReader, serialized_reader::SerializedFileReader,
};

/// Key-value metadata key of the checksum.
pub const KEY: &str = "flowlog.crc32";

/// The metadata entry for what passed through `w` so far.
pub fn key_value<W>(w: &crate::durable::Summed<W>) -> KeyValue {
    let (bytes, crc) = w.sum();
    KeyValue::new(KEY.to_owned(), format!("{bytes}:{crc:08x}"))
}

/// Checks a file's checksum, if it has one; the reason when it does not
/// match.
pub fn verify(path: &Path) -> Result<(), String> {
    let reader =
        SerializedFileReader::new(File::open(path).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let Some(value) = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == KEY))
        .and_then(|k| k.value.clone())
    else {
        return Ok(());
    };
    let (bytes, want) = value
        .split_once(':')
        .and_then(|(b, c)| Some((b.parse::<u64>().ok()?, u32::from_str_radix(c, 16).ok()?)))
        .ok_or_else(|| format!("unreadable checksum {value:?}"))?;
    let mut hasher = crc32fast::Hasher::new();
    // A handle of its own: the footer reader moved the other one's offset.
    let mut rest = File::open(path).map_err(|e| e.to_string())?.take(bytes);
    let mut buf = vec![0u8; 1 << 16];
    let mut read = 0u64;
    loop {
        let n = rest.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    if read != bytes {
        return Err(format!("checksum covers {bytes} bytes, the file has {read}"));
    }
    let got = hasher.finalize();
    if got != want {
        return Err(format!(
            "checksum mismatch (data damaged): {got:08x}, written {want:08x}"
        ));
    }
    Ok(())
}
