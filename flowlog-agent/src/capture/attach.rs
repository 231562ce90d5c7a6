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

use super::{AttachedInterface, CaptureError, iface};
use crate::{
    config::{Attachment, CaptureMode},
    window::AttachmentInfo,
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

/// Detaches links (closing their fds; no namespace needed).
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
        };
        if let Some(Err(e)) = result {
            warn!(error = %super::chain(&e), "detaching a program link failed");
        }
    }
}

/// Attaches to one interface; must run inside the interface's namespace.
/// On failure, whatever was attached to the interface is detached again.
pub fn attach(ebpf: &mut Ebpf, att: &Attachment) -> Result<(AttachedInterface, Vec<Link>), CaptureError> {
    let mut links = Vec::new();
    match attach_links(ebpf, att, &mut links) {
        Ok(a) => Ok((a, links)),
        Err(e) => {
            detach(ebpf, links);
            Err(e)
        }
    }
}

fn attach_links(
    ebpf: &mut Ebpf,
    att: &Attachment,
    links: &mut Vec<Link>,
) -> Result<AttachedInterface, CaptureError> {
    let found = iface::lookup(&att.interface).map_err(|e| CaptureError::Attach {
        hook: "lookup",
        attachment: att.to_string(),
        detail: super::chain(&e),
    })?;
    let Some(info) = found else {
        return Err(CaptureError::NoInterface {
            attachment: att.to_string(),
        });
    };
    let ingress = match att.mode {
        CaptureMode::Tc => None,
        CaptureMode::Xdp => match attach_xdp(ebpf, att, info.ifindex, XdpMode::Driver) {
            Ok(link) => Some((Hook::XdpDriver, link)),
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
                Some((Hook::XdpGeneric, link))
            }
        },
        CaptureMode::Auto if info.is_physical() => match attach_xdp(ebpf, att, info.ifindex, XdpMode::Driver)
        {
            Ok(link) => Some((Hook::XdpDriver, link)),
            Err(e) => {
                info!(interface = %att, driver = %info.driver, error = %e, "no native XDP; using TC");
                None
            }
        },
        CaptureMode::Auto => None,
    };
    let ingress = match ingress {
        Some((h, link)) => {
            links.push(link);
            h
        }
        None => {
            links.push(attach_tc(ebpf, att, PROG_TC_INGRESS, TcAttachType::Ingress)?);
            Hook::Tc
        }
    };
    links.push(attach_tc(ebpf, att, PROG_TC_EGRESS, TcAttachType::Egress)?);
    info!(interface = %att, ifindex = info.ifindex, driver = %info.driver, %ingress, egress = %Hook::Tc, "attached");
    Ok(AttachedInterface {
        info: AttachmentInfo {
            ifindex: info.ifindex,
            interface: att.interface.clone(),
            netns: att.netns.clone(),
        },
        ingress,
        egress: Hook::Tc,
        driver: info.driver,
    })
}
