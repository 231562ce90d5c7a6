//! Library target of the kernel-program crate: empty, it only lets the agent
//! name this crate as a build dependency so cargo rebuilds when it changes.
#![no_std]
