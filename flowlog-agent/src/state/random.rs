//! Random identifiers and secrets from the OS random source, and nothing
//! else: when the source fails, the caller gets an error, never a string
//! someone could guess.

/// The OS random source failed.
#[derive(Debug, thiserror::Error)]
#[error("the system's random source failed: {0}")]
pub struct RandomError(String);

pub const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
pub const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `n` characters drawn uniformly from `alphabet` (at most 256 of them).
pub fn string(alphabet: &[u8], n: usize) -> Result<String, RandomError> {
    string_from(alphabet, n, |b| {
        getrandom::fill(b).map_err(|e| RandomError(e.to_string()))
    })
}

/// [`string`] with the bytes from `fill`. A byte is used only below the
/// largest multiple of the alphabet's size (rejection sampling), so every
/// character is equally likely: `byte % len` alone would favour the first
/// `256 % len` characters.
pub fn string_from(
    alphabet: &[u8],
    n: usize,
    mut fill: impl FnMut(&mut [u8]) -> Result<(), RandomError>,
) -> Result<String, RandomError> {
    let len = alphabet.len();
    if len == 0 || len > 256 {
        return Err(RandomError(format!("an alphabet of {len} characters")));
    }
    let limit = 256 - 256 % len;
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        fill(&mut buf)?;
        for b in buf {
            if out.len() == n {
                break;
            }
            if usize::from(b) < limit {
                out.push(char::from(alphabet[usize::from(b) % len]));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_character_is_equally_likely() {
        // Feed every byte value once: each of 36 characters must come out
        // exactly 7 times (252 bytes used, 4 rejected).
        let mut next = 0u16;
        let s = string_from(LOWER_ALNUM, 252, |b| {
            for x in b.iter_mut() {
                *x = (next % 256) as u8;
                next += 1;
            }
            Ok(())
        })
        .unwrap();
        for c in LOWER_ALNUM {
            assert_eq!(s.bytes().filter(|b| b == c).count(), 7, "{}", char::from(*c));
        }
    }

    #[test]
    fn a_failing_source_is_an_error_not_a_guessable_string() {
        let r = string_from(ALNUM, 40, |_| Err(RandomError("no entropy".into())));
        assert!(r.is_err());
        assert_eq!(string(ALNUM, 40).map(|s| s.len()).ok(), Some(40));
    }
}
