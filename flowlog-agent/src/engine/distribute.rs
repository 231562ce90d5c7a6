//! Who gets what of a cut: pure code shared by the live path and a
//! restart's replay of the journal, so both hand out counts the same way.
//!
//! A namespace's drained flows carry kernel interface indexes; each
//! interface is used by one or more flow logs, in each under its
//! attachment slot. Every flow goes to every flow log using its interface,
//! with `ifindex` replaced by that slot, so interfaces of different
//! namespaces never collide inside a flow log's window.

use std::collections::HashMap;

use crate::{
    journal::{NsCut, User},
    window::WindowAggregate,
};

/// Where counts go: the open windows of flow logs, by id.
pub trait Aggregates {
    fn aggregate(&mut self, flow_log: &str) -> Option<&mut WindowAggregate>;
}

/// One window being rebuilt (a replay).
pub struct One<'a> {
    pub flow_log: &'a str,
    pub aggregate: &'a mut WindowAggregate,
}

impl Aggregates for One<'_> {
    fn aggregate(&mut self, flow_log: &str) -> Option<&mut WindowAggregate> {
        (flow_log == self.flow_log).then_some(&mut *self.aggregate)
    }
}

/// Hands one namespace's cut to the flow logs its targets name.
pub fn distribute(ns: NsCut, to: &mut impl Aggregates) {
    let NsCut {
        targets, data: mut w, ..
    } = ns;
    let targets: HashMap<u32, Vec<User>> = targets
        .into_iter()
        .filter(|t| !t.users.is_empty())
        .map(|t| (t.ifindex, t.users))
        .collect();
    // The common case — every interface here feeds the same single flow
    // log — moves the drained table instead of copying a million flows.
    let mut owners = targets.values();
    let sole = match owners.next() {
        Some(u) if u.len() == 1 && owners.all(|o| o.len() == 1 && o[0].flow_log == u[0].flow_log) => {
            Some(u[0].flow_log.clone())
        }
        _ => None,
    };
    if let Some(id) = sole
        && to.aggregate(&id).is_some()
    {
        let slot_of: HashMap<u32, u32> = targets.iter().map(|(i, u)| (*i, u[0].slot)).collect();
        let mut rtt = HashMap::with_capacity(w.rtt.len());
        for (key, _) in w.flows.iter_mut() {
            let r = w.rtt.remove(key);
            // Flows of an interface nobody uses are dropped at finish.
            key.ifindex = slot_of.get(&key.ifindex).copied().unwrap_or(u32::MAX);
            if let Some(r) = r {
                rtt.insert(*key, r);
            }
        }
        if let Some(a) = to.aggregate(&id) {
            a.flows.append(&mut w.flows);
            a.rtt.extend(rtt);
        }
    } else {
        for (key, stats) in w.flows.iter() {
            let Some(users) = targets.get(&key.ifindex) else {
                continue;
            };
            let rtt = w.rtt.get(key);
            for u in users {
                if let Some(a) = to.aggregate(&u.flow_log) {
                    let mut k = *key;
                    k.ifindex = u.slot;
                    a.flows.push(k, *stats);
                    if let Some(rtt) = rtt {
                        a.rtt.insert(k, *rtt);
                    }
                }
            }
        }
    }
    for ((ifindex, dir), c) in &w.skipped {
        for u in targets.get(ifindex).into_iter().flatten() {
            if let Some(a) = to.aggregate(&u.flow_log) {
                a.add_skipped(u.slot, *dir, c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use flowlog_common::{Counters, Direction, FlowKey, FlowStats};

    use super::*;
    use crate::journal::Target;

    impl Aggregates for BTreeMap<String, WindowAggregate> {
        fn aggregate(&mut self, flow_log: &str) -> Option<&mut WindowAggregate> {
            self.get_mut(flow_log)
        }
    }

    fn key(ifindex: u32, port: u16) -> FlowKey {
        FlowKey {
            src_addr: [1; 16],
            dst_addr: [2; 16],
            ifindex,
            src_port: port,
            dst_port: 80,
            protocol: 6,
            direction: 0,
            ip_version: 4,
            generation: 0,
        }
    }

    fn user(id: &str, slot: u32) -> User {
        User {
            flow_log: id.into(),
            slot,
        }
    }

    fn cut(targets: Vec<(u32, Vec<User>)>) -> NsCut {
        let mut data = WindowAggregate::default();
        for (i, port) in [(10, 1), (10, 2), (11, 3), (12, 4)] {
            data.flows.push(
                key(i, port),
                FlowStats {
                    packets: u64::from(port),
                    bytes: 100 * u64::from(port),
                    ..Default::default()
                },
            );
        }
        data.add_skipped(
            11,
            Direction::Egress,
            &Counters {
                packets: 7,
                bytes: 700,
            },
        );
        NsCut {
            targets: targets
                .into_iter()
                .map(|(ifindex, users)| Target {
                    ifindex,
                    interface: format!("if{ifindex}"),
                    users,
                })
                .collect(),
            data,
            ..Default::default()
        }
    }

    fn packets_by_slot(a: &WindowAggregate) -> Vec<(u32, u64)> {
        let mut v: Vec<(u32, u64)> = a.flows.iter().map(|(k, s)| (k.ifindex, s.packets)).collect();
        v.sort();
        v
    }

    #[test]
    fn a_shared_interface_feeds_every_flow_log_under_its_own_slot() {
        let mut to: BTreeMap<String, WindowAggregate> = [
            ("a".to_string(), WindowAggregate::default()),
            ("b".into(), WindowAggregate::default()),
        ]
        .into();
        // if10 is a's slot 0 and b's slot 1; if11 only b's slot 0; if12 nobody's.
        distribute(
            cut(vec![
                (10, vec![user("a", 0), user("b", 1)]),
                (11, vec![user("b", 0)]),
            ]),
            &mut to,
        );
        assert_eq!(packets_by_slot(&to["a"]), vec![(0, 1), (0, 2)]);
        assert_eq!(packets_by_slot(&to["b"]), vec![(0, 3), (1, 1), (1, 2)]);
        assert!(to["a"].skipped.is_empty());
        assert_eq!(to["b"].skipped[&(0, Direction::Egress)].packets, 7);
    }

    #[test]
    fn a_sole_flow_log_takes_the_table_whole_and_unused_interfaces_are_marked() {
        let mut agg = WindowAggregate::default();
        distribute(
            cut(vec![(10, vec![user("a", 1)]), (11, vec![user("a", 0)])]),
            &mut One {
                flow_log: "a",
                aggregate: &mut agg,
            },
        );
        // if12's flow is kept under an impossible slot; finish drops it.
        assert_eq!(packets_by_slot(&agg), vec![(0, 3), (1, 1), (1, 2), (u32::MAX, 4)]);
        assert_eq!(agg.skipped[&(0, Direction::Egress)].bytes, 700);
        // A replay for another flow log takes nothing.
        let mut other = WindowAggregate::default();
        distribute(
            cut(vec![(10, vec![user("a", 1)])]),
            &mut One {
                flow_log: "b",
                aggregate: &mut other,
            },
        );
        assert!(other.flows.is_empty() && other.skipped.is_empty());
    }
}
