//! The values every stage passes along — a window's bounds and clock
//! conversions, the interfaces a flow log reports on, whose records they
//! are and which Logstore keeps them — and the one validator per kind of
//! name or id. Nothing here imports another module of the crate, so any
//! stage can use these without pulling in another stage.

pub mod attachment;
pub mod clock;
pub mod identity;
pub mod validate;

pub use attachment::{AttachmentInfo, CaptureMode};
pub use clock::{Clock, ClockOffset, JiffiesRef, SystemClock, Window};
pub use identity::{Identity, LogstoreRef};
