//! Which flow logs use which interface, and under which slot: the
//! reference counts that make flow logs sharing an interface share its
//! hooks. Pure bookkeeping; the engine attaches and detaches by what it
//! says.

use std::collections::BTreeMap;

use crate::{
    capture::AttachedInterface,
    config::Attachment,
    journal::{Target, User},
};

/// An interface as flow logs name it: (namespace, interface name).
pub type AttachmentKey = (Option<String>, String);

pub fn attachment_key(a: &Attachment) -> AttachmentKey {
    (a.netns.clone(), a.interface.clone())
}

/// Flow logs using each attached interface, with the slot the interface
/// has in each (its place in that flow log's attachment list).
#[derive(Debug, Default)]
pub struct Routing {
    users: BTreeMap<AttachmentKey, Vec<(String, u32)>>,
}

impl Routing {
    /// Whether the interface is attached (some flow log uses it, or one
    /// being activated just attached it).
    pub fn is_attached(&self, key: &AttachmentKey) -> bool {
        self.users.contains_key(key)
    }

    /// The interface was attached; nobody uses it yet.
    pub fn attached(&mut self, key: AttachmentKey) {
        self.users.entry(key).or_default();
    }

    /// Forgets an interface (an activation rolled back).
    pub fn forget(&mut self, key: &AttachmentKey) {
        self.users.remove(key);
    }

    /// A flow log starts using its attachments, attachment i as slot i.
    /// Every one must be attached already.
    pub fn join(&mut self, flow_log: &str, attachments: &[Attachment]) {
        for (slot, a) in attachments.iter().enumerate() {
            if let Some(u) = self.users.get_mut(&attachment_key(a)) {
                u.push((flow_log.to_owned(), slot as u32));
            }
        }
    }

    /// A flow log stops using its attachments; returns the interfaces
    /// nobody uses any more, which the caller detaches.
    pub fn leave(&mut self, flow_log: &str, attachments: &[Attachment]) -> Vec<AttachmentKey> {
        let mut unused = Vec::new();
        for a in attachments {
            let key = attachment_key(a);
            let empty = self.users.get_mut(&key).is_some_and(|u| {
                u.retain(|(id, _)| id != flow_log);
                u.is_empty()
            });
            if empty {
                self.users.remove(&key);
                unused.push(key);
            }
        }
        unused
    }

    /// Flow logs using an interface.
    pub fn flow_logs(&self, key: &AttachmentKey) -> Vec<String> {
        self.users
            .get(key)
            .map(|u| u.iter().map(|(id, _)| id.clone()).collect())
            .unwrap_or_default()
    }

    /// ifindex → the flow logs (with their slot) using each interface of a
    /// namespace, as a cut records it.
    pub fn targets<'a>(
        &self,
        netns: Option<&str>,
        attached: impl Iterator<Item = &'a AttachedInterface>,
    ) -> Vec<Target> {
        let ns = netns.map(str::to_owned);
        attached
            .map(|a| Target {
                ifindex: a.info.ifindex,
                interface: a.info.interface.clone(),
                users: self
                    .users
                    .get(&(ns.clone(), a.info.interface.clone()))
                    .map(|u| {
                        u.iter()
                            .map(|(id, slot)| User {
                                flow_log: id.clone(),
                                slot: *slot,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Interfaces attached.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn clear(&mut self) {
        self.users.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttachmentInfo;

    fn att(interface: &str) -> Attachment {
        Attachment {
            interface: interface.into(),
            ..Default::default()
        }
    }

    fn attached(interface: &str, ifindex: u32) -> AttachedInterface {
        AttachedInterface {
            info: AttachmentInfo {
                ifindex,
                interface: interface.into(),
                ..Default::default()
            },
            ingress: crate::capture::Hook::Tc,
            egress: crate::capture::Hook::Tc,
            driver: String::new(),
        }
    }

    #[test]
    fn an_interface_is_released_only_when_its_last_user_leaves() {
        let mut r = Routing::default();
        let (a, b) = ([att("eth0"), att("eth1")], [att("eth1")]);
        for x in &a {
            r.attached(attachment_key(x));
        }
        r.join("fl-a", &a);
        assert!(r.is_attached(&attachment_key(&b[0])));
        r.join("fl-b", &b);
        assert_eq!(r.flow_logs(&(None, "eth1".into())), ["fl-a", "fl-b"]);
        // eth1 is still fl-b's; eth0 was only fl-a's.
        assert_eq!(r.leave("fl-a", &a), [(None, "eth0".to_owned())]);
        assert_eq!(r.leave("fl-b", &b), [(None, "eth1".to_owned())]);
        assert!(r.is_empty());
    }

    #[test]
    fn a_cut_names_each_user_with_its_own_slot() {
        let mut r = Routing::default();
        let (a, b) = ([att("eth0"), att("eth1")], [att("eth1")]);
        for x in &a {
            r.attached(attachment_key(x));
        }
        r.join("fl-a", &a);
        r.join("fl-b", &b);
        let ifaces = [attached("eth0", 7), attached("eth1", 9)];
        let t = r.targets(None, ifaces.iter());
        let users = |i: usize| -> Vec<(String, u32)> {
            t[i].users.iter().map(|u| (u.flow_log.clone(), u.slot)).collect()
        };
        assert_eq!((t[0].ifindex, users(0)), (7, vec![("fl-a".into(), 0)]));
        assert_eq!(
            (t[1].ifindex, users(1)),
            (9, vec![("fl-a".into(), 1), ("fl-b".into(), 0)])
        );
        // Another namespace's interface of the same name is not these.
        assert!(
            r.targets(Some("ns1"), ifaces.iter())
                .iter()
                .all(|t| t.users.is_empty())
        );
    }
}
