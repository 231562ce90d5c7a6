//! Loading the programs into the kernel and hooking them to interfaces.

use std::fmt;

use aya::{
    Ebpf,
    programs::{
        ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode, tc::SchedClassifierLinkId, xdp::XdpLinkId,
    },
};
use flowlog_common::{PROG_CLOCK, PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP};
use tracing::{info, warn};

use super::{AttachedInterface, CaptureError, iface, pins::NetnsPins, sys};
use crate::{
    config::{Attachment, CaptureMode},
    model::AttachmentInfo,
};

/// Which hook serves one direction of an attachment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    XdpDriver,
    XdpGeneric,
    Tc,
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::XdpDriver => "xdp-driver",
            Self::XdpGeneric => "xdp-generic",
            Self::Tc => "tc",
        })
    }
}

/// Verifier output is long; the end says what went wrong.
fn describe(e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("{io_error}; verifier says:\n{}", tail.join("\n"))
        }
        other => super::chain(other),
    }
}

pub fn load_programs(ebpf: &mut Ebpf, scope: &str) -> Result<(), CaptureError> {
    let fail = |program: &'static str| {
        let scope = scope.to_owned();
        move |detail: String| CaptureError::Program {
            program,
            scope,
            detail,
        }
    };
    for name in [PROG_XDP, PROG_CLOCK] {
        let xdp: &mut Xdp = ebpf
            .program_mut(name)
            .ok_or_else(|| fail(name)("not in the object".into()))?
            .try_into()
            .map_err(|e| fail(name)(describe(&e)))?;
        xdp.load().map_err(|e| fail(name)(describe(&e)))?;
    }
    for name in [PROG_TC_INGRESS, PROG_TC_EGRESS] {
        let tc: &mut SchedClassifier = ebpf
            .program_mut(name)
            .ok_or_else(|| fail(name)("not in the object".into()))?
            .try_into()
            .map_err(|e| fail(name)(describe(&e)))?;
        tc.load().map_err(|e| fail(name)(describe(&e)))?;
    }
    Ok(())
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str, att: &Attachment) -> Result<&'a mut T, CaptureError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let p = ebpf.program_mut(name).ok_or_else(|| CaptureError::Attach {
        hook: name,
        attachment: att.to_string(),
        detail: "program missing from the object".into(),
    })?;
    p.try_into().map_err(|e| CaptureError::Attach {
        hook: name,
        attachment: att.to_string(),
        detail: describe(&e),
    })
}

/// A program link on an interface, to detach it later.
#[derive(Debug)]
pub enum Link {
    Xdp(XdpLinkId),
    Tc(&'static str, SchedClassifierLinkId),
    /// Held by its pin alone: unpinning detaches it.
    Pinned(std::path::PathBuf),
}

impl Hook {
    /// Name of the pinned link file for this ingress hook.
    fn pin_name(self) -> &'static str {
        match self {
            Self::XdpDriver => "xdp-driver",
            Self::XdpGeneric => "xdp-generic",
            Self::Tc => "tc-ingress",
        }
    }

    fn from_pin_name(name: &str) -> Option<Self> {
        [Self::XdpDriver, Self::XdpGeneric, Self::Tc]
            .into_iter()
            .find(|h| h.pin_name() == name)
    }
}

const EGRESS_PIN: &str = "tc-egress";

/// Program and link kind a pinned hook file stands for.
fn pinned_kind(hook: &str) -> (&'static str, u32, Option<u32>) {
    match hook {
        "tc-ingress" => (
            PROG_TC_INGRESS,
            sys::BPF_LINK_TYPE_TCX,
            Some(sys::BPF_TCX_INGRESS),
        ),
        "tc-egress" => (PROG_TC_EGRESS, sys::BPF_LINK_TYPE_TCX, Some(sys::BPF_TCX_EGRESS)),
        _ => (PROG_XDP, sys::BPF_LINK_TYPE_XDP, None),
    }
}

/// Takes over a link an earlier run pinned: checks it still hooks this
/// interface the right way, then swaps our program in atomically, so no
/// packet goes uncounted in between. `None` when there is nothing usable.
fn adopt_link(ebpf: &Ebpf, path: &std::path::Path, hook: &str, ifindex: u32) -> Option<Link> {
    let link = match sys::obj_get(path) {
        Ok(fd) => fd,
        Err(_) => return None,
    };
    let (program, link_type, attach_type) = pinned_kind(hook);
    let info = sys::link_info(std::os::fd::AsFd::as_fd(&link)).ok()?;
    if info.link_type != link_type
        || info.ifindex != ifindex
        || attach_type.is_some_and(|t| t != info.attach_type)
    {
        info!(path = %path.display(), ?info, ifindex, "pinned link is stale (interface gone or changed)");
        return None;
    }
    let prog = ebpf.program(program)?.fd().ok()?;
    match sys::link_update(std::os::fd::AsFd::as_fd(&link), std::os::fd::AsFd::as_fd(prog)) {
        Ok(()) => Some(Link::Pinned(path.to_owned())),
        Err(e) => {
            warn!(path = %path.display(), error = %super::chain(&e), "cannot swap the program of a pinned link");
            None
        }
    }
}

/// Pins a freshly made link, which from then on outlives this process.
/// Aya closes a link it fails to pin, detaching it, so on failure `Err`
/// says why and the caller attaches again without a pin.
fn pin_link(ebpf: &mut Ebpf, link: Link, path: &std::path::Path) -> Result<Link, String> {
    use aya::programs::links::FdLink;
    let fd_link: FdLink = match link {
        Link::Xdp(id) => {
            let xdp: &mut Xdp = typed(ebpf, PROG_XDP)?;
            let l = xdp.take_link(id).map_err(|e| describe(&e))?;
            FdLink::try_from(l).map_err(|e| super::chain(&e))?
        }
        Link::Tc(name, id) => {
            let tc: &mut SchedClassifier = typed(ebpf, name)?;
            let l = tc.take_link(id).map_err(|e| describe(&e))?;
            FdLink::try_from(l).map_err(|e| super::chain(&e))?
        }
        pinned @ Link::Pinned(_) => return Ok(pinned),
    };
    // Dropping the returned handle closes our fd; the pin keeps the link.
    fd_link.pin(path).map_err(|e| super::chain(&e))?;
    Ok(Link::Pinned(path.to_owned()))
}

fn typed<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| format!("program {name} missing"))?
        .try_into()
        .map_err(|e: ProgramError| describe(&e))
}

fn attach_tc(
    ebpf: &mut Ebpf,
    att: &Attachment,
    name: &'static str,
    kind: TcAttachType,
) -> Result<Link, CaptureError> {
    let tc: &mut SchedClassifier = program(ebpf, name, att)?;
    tc.attach(&att.interface, kind)
        .map(|id| Link::Tc(name, id))
        .map_err(|e| CaptureError::Attach {
            hook: name,
            attachment: att.to_string(),
            detail: format!(
                "{}; is another TC program holding the interface exclusively?",
                describe(&e)
            ),
        })
}

fn attach_xdp(ebpf: &mut Ebpf, att: &Attachment, ifindex: u32, mode: XdpMode) -> Result<Link, String> {
    let xdp: &mut Xdp = program(ebpf, PROG_XDP, att).map_err(|e| super::chain(&e))?;
    xdp.attach_to_if_index(ifindex, mode)
        .map(Link::Xdp)
        .map_err(|e| describe(&e))
}

/// Detaches links (closing their fds or unpinning; no namespace needed).
pub fn detach(ebpf: &mut Ebpf, links: Vec<Link>) {
    for link in links {
        let result = match link {
            Link::Xdp(id) => ebpf
                .program_mut(PROG_XDP)
                .and_then(|p| <&mut Xdp>::try_from(p).ok())
                .map(|p| p.detach(id)),
            Link::Tc(name, id) => ebpf
                .program_mut(name)
                .and_then(|p| <&mut SchedClassifier>::try_from(p).ok())
                .map(|p| p.detach(id)),
            Link::Pinned(path) => {
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    warn!(path = %path.display(), error = %e, "cannot unpin a link; it stays attached");
                }
                None
            }
        };
        if let Some(Err(e)) = result {
            warn!(error = %super::chain(&e), "detaching a program link failed");
        }
    }
}

/// Links an earlier run pinned that this attachment took over.
#[derive(Debug, Default)]
pub struct Adopted {
    ingress: Option<(Hook, Link)>,
    egress: Option<Link>,
}

impl Adopted {
    pub fn any(&self) -> bool {
        self.ingress.is_some() || self.egress.is_some()
    }
}

/// A link and the name of the file to pin it as (`None`: already pinned).
pub type NamedLink = (Option<&'static str>, Link);

/// Attaches to one interface whatever `adopted` does not already cover;
/// must run inside the interface's namespace. On failure, whatever this
/// call attached is detached again (adopted links stay pinned).
pub fn attach(
    ebpf: &mut Ebpf,
    att: &Attachment,
    info: &iface::InterfaceInfo,
    adopted: Adopted,
) -> Result<(AttachedInterface, Vec<NamedLink>), CaptureError> {
    let mut links = Vec::new();
    match attach_links(ebpf, att, info, adopted, &mut links) {
        Ok(a) => Ok((a, links)),
        Err(e) => {
            let fresh = links
                .into_iter()
                .filter(|(name, _)| name.is_some())
                .map(|(_, l)| l)
                .collect();
            detach(ebpf, fresh);
            Err(e)
        }
    }
}

/// Ingress hooks an attachment's mode may be served by.
fn ingress_hooks(mode: CaptureMode, physical: bool) -> &'static [Hook] {
    match mode {
        CaptureMode::Tc => &[Hook::Tc],
        CaptureMode::Xdp => &[Hook::XdpDriver, Hook::XdpGeneric],
        CaptureMode::Auto if physical => &[Hook::XdpDriver, Hook::Tc],
        CaptureMode::Auto => &[Hook::Tc],
    }
}

/// Takes over this interface's pinned links that fit the attachment, and
/// unpins the rest (another mode, a dead interface), so that no packet is
/// counted by two hooks. Runs outside the namespace: bpffs refuses to pin
/// from a thread that joined another network namespace.
pub fn adopt_links(ebpf: &Ebpf, att: &Attachment, pins: &NetnsPins, info: &iface::InterfaceInfo) -> Adopted {
    let wanted = ingress_hooks(att.mode, info.is_physical());
    let mut out = Adopted::default();
    for (iface, name) in pins.pinned_links() {
        if iface != att.interface {
            continue;
        }
        let path = pins.link_path(&iface, name);
        let taken = if name == EGRESS_PIN {
            out.egress.is_none() && {
                out.egress = adopt_link(ebpf, &path, name, info.ifindex);
                out.egress.is_some()
            }
        } else {
            match Hook::from_pin_name(name) {
                Some(h) if out.ingress.is_none() && wanted.contains(&h) => {
                    out.ingress = adopt_link(ebpf, &path, name, info.ifindex).map(|l| (h, l));
                    out.ingress.is_some()
                }
                _ => false,
            }
        };
        if !taken {
            info!(path = %path.display(), "unpinning a link this attachment does not use");
            pins.remove_link(&iface, name);
        }
    }
    out
}

/// Pins each fresh link; outside the namespace (see [`adopt_links`]).
/// Aya closes a link it fails to pin, detaching it: the hooks of those are
/// returned so the caller can attach them again, unpinned.
pub fn pin_links(
    ebpf: &mut Ebpf,
    pins: &NetnsPins,
    interface: &str,
    links: Vec<NamedLink>,
) -> (Vec<Link>, Vec<&'static str>) {
    let (mut kept, mut lost) = (Vec::new(), Vec::new());
    for (name, link) in links {
        let Some(name) = name else {
            kept.push(link);
            continue;
        };
        match pin_link(ebpf, link, &pins.link_path(interface, name)) {
            Ok(l) => kept.push(l),
            Err(e) => {
                warn!(interface, hook = name, error = %e, "cannot pin the link; attaching it again, unpinned");
                lost.push(name);
            }
        }
    }
    (kept, lost)
}

/// Attaches one hook again, unpinned (after a failed pin); in the namespace.
pub fn reattach(
    ebpf: &mut Ebpf,
    att: &Attachment,
    ifindex: u32,
    pin_name: &str,
) -> Result<Link, CaptureError> {
    match pin_name {
        "tc-ingress" => attach_tc(ebpf, att, PROG_TC_INGRESS, TcAttachType::Ingress),
        "tc-egress" => attach_tc(ebpf, att, PROG_TC_EGRESS, TcAttachType::Egress),
        other => {
            let mode = if other == "xdp-generic" {
                XdpMode::Skb
            } else {
                XdpMode::Driver
            };
            attach_xdp(ebpf, att, ifindex, mode).map_err(|detail| CaptureError::Attach {
                hook: PROG_XDP,
                attachment: att.to_string(),
                detail,
            })
        }
    }
}

fn attach_links(
    ebpf: &mut Ebpf,
    att: &Attachment,
    info: &iface::InterfaceInfo,
    adopted: Adopted,
    links: &mut Vec<NamedLink>,
) -> Result<AttachedInterface, CaptureError> {
    let was_adopted = adopted.any();
    let fresh = |h: Hook, link: Link| (h, link, Some(h.pin_name()));
    let ingress = match adopted.ingress {
        Some((h, link)) => Some((h, link, None)),
        None => match att.mode {
            CaptureMode::Tc => None,
            CaptureMode::Xdp => match attach_xdp(ebpf, att, info.ifindex, XdpMode::Driver) {
                Ok(link) => Some(fresh(Hook::XdpDriver, link)),
                Err(driver_err) => {
                    warn!(interface = %att, error = %driver_err, "native XDP refused; using generic (SKB) XDP");
                    let link = attach_xdp(ebpf, att, info.ifindex, XdpMode::Skb).map_err(|detail| {
                        CaptureError::Attach {
                            hook: PROG_XDP,
                            attachment: att.to_string(),
                            detail: format!(
                                "driver mode: {driver_err}; generic mode: {detail}; try mode = \"tc\""
                            ),
                        }
                    })?;
                    Some(fresh(Hook::XdpGeneric, link))
                }
            },
            CaptureMode::Auto if info.is_physical() => {
                match attach_xdp(ebpf, att, info.ifindex, XdpMode::Driver) {
                    Ok(link) => Some(fresh(Hook::XdpDriver, link)),
                    Err(e) => {
                        info!(interface = %att, driver = %info.driver, error = %e, "no native XDP; using TC");
                        None
                    }
                }
            }
            CaptureMode::Auto => None,
        },
    };
    let ingress = match ingress {
        Some((h, link, name)) => {
            links.push((name, link));
            h
        }
        None => {
            let link = attach_tc(ebpf, att, PROG_TC_INGRESS, TcAttachType::Ingress)?;
            links.push((Some(Hook::Tc.pin_name()), link));
            Hook::Tc
        }
    };
    match adopted.egress {
        Some(link) => links.push((None, link)),
        None => {
            let link = attach_tc(ebpf, att, PROG_TC_EGRESS, TcAttachType::Egress)?;
            links.push((Some(EGRESS_PIN), link));
        }
    }
    info!(interface = %att, ifindex = info.ifindex, driver = %info.driver, %ingress, egress = %Hook::Tc, adopted = was_adopted, "attached");
    Ok(AttachedInterface {
        info: AttachmentInfo {
            ifindex: info.ifindex,
            kernel_ifindex: info.ifindex,
            interface: att.interface.clone(),
            netns: att.netns.clone(),
            attachment_id: att.attachment_id.clone(),
            region_id: att.region_id.clone(),
        },
        ingress,
        egress: Hook::Tc,
        driver: info.driver.clone(),
    })
}
