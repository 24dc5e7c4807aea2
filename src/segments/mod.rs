//! Saved segments: named filters, the Entered/Exited events of users crossing them, and the
//! bounded, persisted log those events are kept in.
//!
//! Every change the index writer applies reaches [`SegmentsObserver`] with the user's previous
//! state; each segment's filter is evaluated on both versions with the in-memory matcher, and a
//! difference is an event. Events get increasing sequence numbers, are appended to the log and
//! fsynced before the index commit that holds their change (the commit records the last
//! sequence, so after a crash log and index agree), and go to live watchers once that commit
//! succeeded. Segment edits run on the writer thread too ([`crate::index::WriterHandle::exclusive`]),
//! so they are ordered with changes; an edited filter emits the membership difference, computed
//! with the index on the snapshot of that moment.
//!
//! This file only declares and re-exports.

mod core;
mod error;
mod feed;
mod history;
mod log;
mod model;
mod observer;
mod service;
mod shared;
mod tick;
mod ticker;
mod watch;

pub use core::name_problem;
pub use error::SegmentError;
pub use feed::{FeedPage, MembersSnapshot};
pub use history::{Bucket, Granularity};
pub use model::{EventKind, SavedSegment, SegmentEvent, SegmentMetrics, SegmentsConfig};
pub use observer::{SegmentsHandle, SegmentsObserver, open};
pub use service::Segments;
pub use watch::{MayWatch, Selection};

#[cfg(test)]
mod tests;
