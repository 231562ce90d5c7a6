//! The bpf(2) operations aya 0.14 does not expose: batched lookup and
//! delete of a hash map, waiting for running programs, test runs, and
//! inspecting and updating pinned links.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;

#[derive(Debug, thiserror::Error)]
#[error("bpf({op}) failed")]
pub struct SysError {
    op: &'static str,
    #[source]
    source: io::Error,
}

/// `union bpf_attr` for BPF_MAP_CREATE (leading fields only; the kernel
/// treats the missing tail as zero).
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T, op: &'static str) -> Result<libc::c_long, SysError> {
    // SAFETY: `attr` is a live, correctly laid out bpf_attr prefix of
    // size_of::<T>() bytes; pointers inside it refer to live buffers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(SysError {
            op,
            source: io::Error::last_os_error(),
        })
    } else {
        Ok(ret)
    }
}

fn create_map(attr: &mut MapCreateAttr) -> Result<OwnedFd, SysError> {
    let fd = bpf(BPF_MAP_CREATE, attr, "map_create")?;
    // SAFETY: BPF_MAP_CREATE returned a new file descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until every BPF program that was running when [`wait`] was called
/// has finished.
///
/// Updating an array-of-maps from userspace makes the kernel call
/// `synchronize_rcu()` before returning, so that callers know no program
/// still uses the old inner map (kernel `maybe_wait_bpf_programs()`; the
/// kernel's own selftests use the same trick). XDP and TC programs run inside
/// RCU read-side sections, so after this no program can still be writing to
/// a flow-map generation it read before the flip.
///
/// [`wait`]: ProgramBarrier::wait
pub struct ProgramBarrier {
    outer: OwnedFd,
    inner: OwnedFd,
}

impl ProgramBarrier {
    pub fn new() -> Result<Self, SysError> {
        let inner = create_map(&mut MapCreateAttr {
            map_type: BPF_MAP_TYPE_ARRAY,
            key_size: 4,
            value_size: 4,
            max_entries: 1,
            ..Default::default()
        })?;
        let outer = create_map(&mut MapCreateAttr {
            map_type: BPF_MAP_TYPE_ARRAY_OF_MAPS,
            key_size: 4,
            value_size: 4,
            max_entries: 1,
            inner_map_fd: inner.as_raw_fd() as u32,
            ..Default::default()
        })?;
        Ok(Self { outer, inner })
    }

    pub fn wait(&self) -> Result<(), SysError> {
        let key: u32 = 0;
        let value: u32 = self.inner.as_raw_fd() as u32;
        let mut attr = MapElemAttr {
            map_fd: self.outer.as_raw_fd() as u32,
            key: std::ptr::from_ref(&key) as u64,
            value: std::ptr::from_ref(&value) as u64,
            ..Default::default()
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr, "map_update_elem(array_of_maps)").map(drop)
    }
}

/// One chunk of a per-CPU hash map: `count` keys of `key_size` bytes, and
/// for each key `cpus` values at an 8-byte stride.
pub struct Chunk<'a> {
    pub keys: &'a [u8],
    pub values: &'a [u8],
    pub count: usize,
}

/// Walks every entry of a per-CPU hash map with BPF_MAP_LOOKUP_BATCH,
/// handing `visit` one chunk (whole buckets) at a time, so memory stays at
/// one chunk whatever the map's size.
///
/// The walk goes bucket by bucket and entries never move between buckets,
/// so an entry nobody inserts or deletes during the walk is visited exactly
/// once, whatever happens to other entries meanwhile — including `visit`
/// deleting the entries of buckets already visited.
pub fn walk_percpu_hash(
    map: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    cpus: usize,
    chunk: usize,
    mut visit: impl FnMut(Chunk<'_>) -> Result<(), SysError>,
) -> Result<(), SysError> {
    let stride = value_size.next_multiple_of(8) * cpus;
    let mut chunk = chunk.max(1);
    let mut keys = vec![0u8; key_size * chunk];
    let mut values = vec![0u8; stride * chunk];
    let mut token = [0u8; 8];
    let mut first = true;
    loop {
        let mut next = [0u8; 8];
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token.as_ptr() as u64 },
            out_batch: next.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: map.as_fd().as_raw_fd() as u32,
            ..Default::default()
        };
        let res = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr, "map_lookup_batch");
        let got = attr.count as usize;
        if got > 0 {
            visit(Chunk {
                keys: &keys[..got * key_size],
                values: &values[..got * stride],
                count: got,
            })?;
        }
        match res {
            Ok(_) => {
                token = next;
                first = false;
            }
            Err(e) => match e.source.raw_os_error() {
                // ENOENT: walked past the last bucket.
                Some(libc::ENOENT) => return Ok(()),
                // ENOSPC: one bucket holds more entries than `chunk`.
                Some(libc::ENOSPC) if got == 0 => {
                    chunk *= 2;
                    keys.resize(key_size * chunk, 0);
                    values.resize(stride * chunk, 0);
                }
                _ => return Err(e),
            },
        }
    }
}

/// Deletes `keys` (concatenated, `key_size` bytes each) with
/// BPF_MAP_DELETE_BATCH. Keys that are already gone end the call early
/// with ENOENT; the rest are then deleted one batch further on.
pub fn delete_keys(map: BorrowedFd<'_>, keys: &[u8], key_size: usize, chunk: usize) -> Result<(), SysError> {
    let mut rest = keys;
    while !rest.is_empty() {
        let n = (rest.len() / key_size).min(chunk.max(1));
        let mut attr = BatchAttr {
            keys: rest.as_ptr() as u64,
            count: n as u32,
            map_fd: map.as_fd().as_raw_fd() as u32,
            ..Default::default()
        };
        let res = bpf(BPF_MAP_DELETE_BATCH, &mut attr, "map_delete_batch");
        let done = attr.count as usize;
        match res {
            Ok(_) => rest = &rest[n * key_size..],
            // A key that vanished: skip it and go on after it.
            Err(e) if e.source.raw_os_error() == Some(libc::ENOENT) => {
                rest = &rest[(done + 1).min(n) * key_size..]
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Inserts `count` entries (keys concatenated; for each key, one value per
/// CPU at an 8-byte stride) with BPF_MAP_UPDATE_BATCH. For tooling that
/// fills a map (benchmarks), not the capture path.
pub fn update_percpu_batch(
    map: BorrowedFd<'_>,
    keys: &[u8],
    values: &[u8],
    count: usize,
) -> Result<(), SysError> {
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: count as u32,
        map_fd: map.as_fd().as_raw_fd() as u32,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_BATCH, &mut attr, "map_update_batch").map(drop)
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
}

/// Runs a loaded XDP program once on `frame` (BPF_PROG_TEST_RUN), as if
/// it arrived on the calling thread's namespace's loopback; returns its
/// verdict and the frame as the program left it. The kernel wants at least
/// an Ethernet header's worth.
pub fn test_run_xdp(prog: BorrowedFd<'_>, frame: &[u8]) -> Result<(u32, Vec<u8>), SysError> {
    // Room for a program that grows the frame (ours never does).
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: prog.as_fd().as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ..Default::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr, "prog_test_run")?;
    out.truncate(attr.data_size_out as usize);
    Ok((attr.retval, out))
}

#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// Opens a pinned object (map, program or link) by its bpffs path.
pub fn obj_get(path: &std::path::Path) -> Result<OwnedFd, SysError> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| SysError {
        op: "obj_get",
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    let mut attr = ObjGetAttr {
        pathname: c.as_ptr() as u64,
        ..Default::default()
    };
    let fd = bpf(BPF_OBJ_GET, &mut attr, "obj_get")?;
    // SAFETY: BPF_OBJ_GET returned a new file descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

pub const BPF_LINK_TYPE_XDP: u32 = 6;
pub const BPF_LINK_TYPE_TCX: u32 = 11;
pub const BPF_TCX_INGRESS: u32 = 46;
pub const BPF_TCX_EGRESS: u32 = 47;

/// What a link is hooked to: `struct bpf_link_info` for XDP and TCX links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub link_type: u32,
    pub prog_id: u32,
    /// 0 once the interface is gone (the link is then defunct).
    pub ifindex: u32,
    /// TCX links only: `BPF_TCX_INGRESS` or `BPF_TCX_EGRESS`.
    pub attach_type: u32,
}

pub fn link_info(link: BorrowedFd<'_>) -> Result<LinkInfo, SysError> {
    // type, id, prog_id, then a union aligned to 8 whose XDP and TCX arms
    // start with ifindex (TCX: then attach_type).
    let mut raw = [0u32; 16];
    let mut attr = InfoAttr {
        bpf_fd: link.as_raw_fd() as u32,
        info_len: size_of_val(&raw) as u32,
        info: raw.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr, "obj_get_info_by_fd(link)")?;
    Ok(LinkInfo {
        link_type: raw[0],
        prog_id: raw[2],
        ifindex: raw[4],
        attach_type: raw[5],
    })
}

#[repr(C)]
#[derive(Default)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// Swaps the program behind a link atomically: packets see either the old
/// program or the new one, never neither.
pub fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> Result<(), SysError> {
    let mut attr = LinkUpdateAttr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: prog.as_raw_fd() as u32,
        ..Default::default()
    };
    bpf(BPF_LINK_UPDATE, &mut attr, "link_update").map(drop)
}
