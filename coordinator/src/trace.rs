//! Assembling a job's trace from `PATCH /jobs/:id/trace` ranges.
//!
//! GitLab writes a patch at its `Content-Range` start and answers 416 with the current length
//! when the start lies beyond it. The runner only ever re-sends bytes it sent before (after a
//! lost answer or a 416), so bytes below the current length are taken as already known and only
//! what extends the trace is kept: the trace and the bytes reported as new never disagree.

use std::ops::Range;

/// Why a patch was not appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TraceRejection {
    /// The patch starts beyond the trace (or has no readable `Content-Range`); the runner
    /// restarts from `len`.
    Gap {
        /// The trace's length.
        len: usize,
    },
    /// The trace would exceed its size limit.
    TooLong,
}

/// The start offset of a `Content-Range: <start>-<end>` header value.
pub(crate) fn content_range_start(value: &str) -> Option<usize> {
    let (start, end) = value.trim().split_once('-')?;
    end.trim().parse::<usize>().ok()?;
    start.trim().parse().ok()
}

/// Appends the part of `body` (starting at offset `start`) that extends `trace`; returns the
/// range of `trace` that is new (possibly empty).
pub(crate) fn append(
    trace: &mut Vec<u8>,
    start: Option<usize>,
    body: &[u8],
    limit: usize,
) -> Result<Range<usize>, TraceRejection> {
    let len = trace.len();
    let start = start
        .filter(|s| *s <= len)
        .ok_or(TraceRejection::Gap { len })?;
    let known = len - start;
    let new = body.get(known..).unwrap_or_default();
    if len.saturating_add(new.len()) > limit {
        return Err(TraceRejection::TooLong);
    }
    trace.extend_from_slice(new);
    Ok(len..trace.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resent_ranges_add_only_what_is_new() {
        let mut trace = Vec::new();
        assert_eq!(append(&mut trace, Some(0), b"abc", 100), Ok(0..3));
        assert_eq!(append(&mut trace, Some(0), b"abc", 100), Ok(3..3));
        assert_eq!(append(&mut trace, Some(1), b"bcdef", 100), Ok(3..6));
        assert_eq!(append(&mut trace, Some(2), b"c", 100), Ok(6..6));
        assert_eq!(trace, b"abcdef");
        assert_eq!(
            append(&mut trace, Some(7), b"x", 100),
            Err(TraceRejection::Gap { len: 6 })
        );
        assert_eq!(
            append(&mut trace, None, b"x", 100),
            Err(TraceRejection::Gap { len: 6 })
        );
        assert_eq!(
            append(&mut trace, Some(6), b"toolong", 10),
            Err(TraceRejection::TooLong)
        );
        assert_eq!(trace, b"abcdef");
    }

    #[test]
    fn content_range_needs_start_and_end() {
        assert_eq!(content_range_start("0-8"), Some(0));
        assert_eq!(content_range_start(" 12-30 "), Some(12));
        assert_eq!(content_range_start("12"), None);
        assert_eq!(content_range_start("a-3"), None);
        assert_eq!(content_range_start("3-b"), None);
    }
}
