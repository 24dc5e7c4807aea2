//! A 2-byte copy of a column of 8-byte offsets (dates in milliseconds): each offset shifted
//! down to its top 16 bits, its bucket. A range scan reads the buckets instead of the offsets:
//! a doc whose bucket lies strictly between the buckets of the range's two ends is in range, one
//! in either end's bucket is checked against its offset, and any other is out. A quarter of
//! the bytes streamed and four times the docs per compare, for one exact check per doc of the
//! two edge buckets (each ~1/65,536 of the column's span).
//!
//! A column whose values crowd into a few buckets (one outlier stretching the span) would
//! send most docs to the exact check; it keeps no buckets and scans its offsets.

use super::range_scan::{Offset, mask_scalar};

/// A column keeps buckets only if no bucket holds more than one in this many of its values.
const CROWDED: usize = 64;

pub struct Buckets {
    shift: u32,
    ids: Vec<u16>,
}

impl Buckets {
    /// The buckets of `offsets` (at most `amplitude`), `present` marking the docs that hold a
    /// value (`None`: every doc); `None` when the values crowd into a few buckets.
    pub fn build(offsets: &[u64], amplitude: u64, present: Option<&[u64]>) -> Option<Buckets> {
        let buckets = Buckets::of(offsets, amplitude);
        let mut counts = vec![0u32; 1 << u16::BITS];
        for (doc, &id) in buckets.ids.iter().enumerate() {
            let holds = present.is_none_or(|present| present[doc / 64] >> (doc % 64) & 1 == 1);
            counts[id as usize] += holds as u32;
        }
        let largest = counts.iter().copied().max().unwrap_or(0) as usize;
        (largest * CROWDED <= offsets.len()).then_some(buckets)
    }

    /// The buckets of `offsets`, however crowded.
    fn of(offsets: &[u64], amplitude: u64) -> Buckets {
        let shift = (u64::BITS - amplitude.leading_zeros()).saturating_sub(u16::BITS);
        let ids = offsets.iter().map(|v| (v >> shift) as u16).collect();
        Buckets { shift, ids }
    }

    pub fn bytes(&self) -> usize {
        self.ids.len() * 2
    }

    /// Sets the words to one bit per doc whose offset (in `offsets`, the ones the buckets were
    /// built from) is within `low..=low + span`; `words` are the ones from `first` on.
    pub fn scan(&self, offsets: &[u64], low: u64, span: u64, words: &mut [u64], first: usize) {
        let (ids, offsets) = (&self.ids[first * 64..], &offsets[first * 64..]);
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            unsafe { Buckets::scan_avx2(ids, offsets, low, span, words, self.shift) };
            return;
        }
        Buckets::scan_with(ids, offsets, low, span, words, self.shift, mask_scalar);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn scan_avx2(
        ids: &[u16],
        offsets: &[u64],
        low: u64,
        span: u64,
        words: &mut [u64],
        shift: u32,
    ) {
        Buckets::scan_with(ids, offsets, low, span, words, shift, |chunk, low, span| {
            match <&[u16; 64]>::try_from(chunk) {
                // SAFETY: the caller checked the CPU.
                Ok(chunk) => unsafe { u16::mask_avx2(chunk, low, span) },
                Err(_) => mask_scalar(chunk, low, span),
            }
        });
    }

    /// The scan of buckets `ids` (made with `shift`) and their `offsets`, with `mask` giving one
    /// bit per bucket of a chunk (of up to 64) in a range.
    #[inline(always)]
    fn scan_with(
        ids: &[u16],
        offsets: &[u64],
        low: u64,
        span: u64,
        words: &mut [u64],
        shift: u32,
        mask: impl Fn(&[u16], u64, u64) -> u64,
    ) {
        let (first, last) = (low >> shift, (low + span) >> shift);
        // Buckets strictly between the two ends' ones, if any.
        let inner = (last >= first + 2).then(|| (first + 1, last - first - 2));
        for ((word, ids), offsets) in words.iter_mut().zip(ids.chunks(64)).zip(offsets.chunks(64)) {
            let mut bits = inner.map_or(0, |(start, span)| mask(ids, start, span));
            let mut edges = mask(ids, first, 0);
            if last != first {
                edges |= mask(ids, last, 0);
            }
            while edges != 0 {
                let bit = edges.trailing_zeros();
                edges &= edges - 1;
                let inside = offsets[bit as usize].wrapping_sub(low) <= span;
                bits |= (inside as u64) << bit;
            }
            *word = bits;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn naive(offsets: &[u64], low: u64, span: u64) -> Vec<u64> {
        (offsets.chunks(64))
            .map(|chunk| {
                (chunk.iter().enumerate())
                    .filter(|(_, v)| **v >= low && **v - low <= span)
                    .fold(0, |word, (i, _)| word | 1 << i)
            })
            .collect()
    }

    fn check(offsets: &[u64], amplitude: u64, low: u64, span: u64) {
        let buckets = Buckets::of(offsets, amplitude);
        let want = naive(offsets, low, span);
        let mut scanned = vec![u64::MAX; want.len()];
        buckets.scan(offsets, low, span, &mut scanned, 0);
        assert_eq!(scanned, want, "dispatched scan");
        let mut scanned = vec![u64::MAX; want.len()];
        let shift = buckets.shift;
        Buckets::scan_with(
            &buckets.ids,
            offsets,
            low,
            span,
            &mut scanned,
            shift,
            mask_scalar,
        );
        assert_eq!(scanned, want, "scalar scan");
        // From a later word on, as a part of a split scan reads it.
        if want.len() > 2 {
            let mut part = vec![u64::MAX; want.len() - 2];
            buckets.scan(offsets, low, span, &mut part, 2);
            assert_eq!(part, want[2..], "part of a scan");
        }
    }

    proptest! {
        #[test]
        fn a_scan_of_the_buckets_finds_the_offsets_in_range(
            amplitude in prop_oneof![Just(u64::MAX), 1u64..1 << 20, 1u64 << 20..1 << 50],
            (a, b) in (any::<u64>(), any::<u64>()),
            picks in proptest::collection::vec((0u8..8, any::<u64>()), 0..400),
        ) {
            let (low, high) = (a.min(b) % (amplitude / 2 + 1), a.max(b) % (amplitude / 2 + 1) + amplitude / 2);
            // Spread values, and values at and beside the range's ends (the edge buckets).
            let mut offsets: Vec<u64> = (0..1000u64).map(|i| i * (amplitude / 1000)).collect();
            offsets.extend(picks.iter().map(|&(kind, x)| match kind {
                0 => low,
                1 => high,
                2 => low.saturating_sub(1),
                3 => (high + 1).min(amplitude),
                4 => low.saturating_add(x % 3).min(amplitude),
                5 => high.saturating_sub(x % 3),
                _ => x % amplitude.saturating_add(1).max(1),
            }));
            check(&offsets, amplitude, low, high - low);
        }
    }

    #[test]
    fn values_crowded_into_a_few_buckets_keep_none() {
        // One outlier stretches the span: every other value falls into bucket 0.
        let mut offsets = vec![5u64; 1000];
        offsets.push(1 << 40);
        assert!(Buckets::build(&offsets, 1 << 40, None).is_none());
        // Absent docs (offset 0) do not count as crowding.
        let spread: Vec<u64> = (0..6400)
            .map(|i| if i % 2 == 0 { 0 } else { i << 24 })
            .collect();
        let present = vec![0xAAAA_AAAA_AAAA_AAAAu64; 100];
        assert!(Buckets::build(&spread, 6400 << 24, Some(&present)).is_some());
        assert!(Buckets::build(&spread, 6400 << 24, None).is_none());
    }
}
