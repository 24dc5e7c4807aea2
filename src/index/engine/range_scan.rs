//! Range checks over decoded offsets, 64 docs per bitmap word: a scalar loop everywhere and,
//! where the CPU has AVX2 (checked once per call), 4 to 16 offsets per compare. The scalar loop
//! packs one compare per doc into the word (~1.2 ns a doc at 1M users, most of a date range's
//! cost); the vector one packs a whole register of compares with one movemask.
//!
//! A value is in range when `value - low`, wrapping in the offset's own width, is at most
//! `span`: offsets, `low` and `low + span` all lie within the column's amplitude, so a value
//! below `low` wraps past every span the column can hold.

/// An offset width of a decoded column.
pub trait Offset: Copy + Into<u64> {
    /// One bit per offset of `chunk` in range, bit `i` for `chunk[i]`.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    unsafe fn mask_avx2(chunk: &[Self; 64], low: u64, span: u64) -> u64;
}

/// Sets the words to one bit per value in range, 64 values per word.
pub fn scan_words<T: Offset>(values: &[T], low: u64, span: u64, words: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        unsafe { scan_words_avx2(values, low, span, words) };
        return;
    }
    scan_words_scalar(values, low, span, words);
}

/// Clears the bits of docs whose value is out of range.
pub fn retain_words<T: Offset>(values: &[T], low: u64, span: u64, words: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        unsafe { retain_words_avx2(values, low, span, words) };
        return;
    }
    retain_words_scalar(values, low, span, words);
}

#[inline]
fn in_range<T: Offset>(value: T, low: u64, span: u64) -> bool {
    value.into().wrapping_sub(low) <= span
}

/// One word of up to 64 values, without branches.
#[inline]
pub(super) fn mask_scalar<T: Offset>(chunk: &[T], low: u64, span: u64) -> u64 {
    let mut mask = 0u64;
    for (i, &value) in chunk.iter().enumerate() {
        mask |= (in_range(value, low, span) as u64) << i;
    }
    mask
}

/// The candidates of `word` (docs from `values[0]`) in range, one doc at a time.
#[inline]
fn keep_sparse<T: Offset>(values: &[T], word: u64, low: u64, span: u64) -> u64 {
    let mut rest = word;
    let mut keep = 0u64;
    while rest != 0 {
        let bit = rest.trailing_zeros();
        rest &= rest - 1;
        keep |= (in_range(values[bit as usize], low, span) as u64) << bit;
    }
    keep
}

fn scan_words_scalar<T: Offset>(values: &[T], low: u64, span: u64, words: &mut [u64]) {
    for (word, chunk) in words.iter_mut().zip(values.chunks(64)) {
        *word = mask_scalar(chunk, low, span);
    }
}

fn retain_words_scalar<T: Offset>(values: &[T], low: u64, span: u64, words: &mut [u64]) {
    for (index, word) in words.iter_mut().enumerate() {
        let start = index * 64;
        *word = keep_sparse(
            &values[start..values.len().min(start + 64)],
            *word,
            low,
            span,
        );
    }
}

/// Words with at least this many candidates are checked a whole register at a time.
#[cfg(target_arch = "x86_64")]
const DENSE: u32 = 8;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_words_avx2<T: Offset>(values: &[T], low: u64, span: u64, words: &mut [u64]) {
    let mut chunks = values.chunks_exact(64);
    let mut index = 0;
    for chunk in chunks.by_ref() {
        let Some(word) = words.get_mut(index) else {
            return;
        };
        // SAFETY: the caller checked the CPU.
        *word = unsafe { T::mask_avx2(chunk.try_into().unwrap(), low, span) };
        index += 1;
    }
    if let Some(word) = words.get_mut(index) {
        *word = mask_scalar(chunks.remainder(), low, span);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn retain_words_avx2<T: Offset>(values: &[T], low: u64, span: u64, words: &mut [u64]) {
    for (index, word) in words.iter_mut().enumerate() {
        if *word == 0 {
            continue;
        }
        let start = index * 64;
        *word = match values.get(start..start + 64) {
            Some(chunk) if word.count_ones() >= DENSE => {
                // SAFETY: the caller checked the CPU.
                *word & unsafe { T::mask_avx2(chunk.try_into().unwrap(), low, span) }
            }
            _ => keep_sparse(
                &values[start..values.len().min(start + 64)],
                *word,
                low,
                span,
            ),
        };
    }
}

#[cfg(not(target_arch = "x86_64"))]
impl Offset for u16 {}
#[cfg(not(target_arch = "x86_64"))]
impl Offset for u32 {}
#[cfg(not(target_arch = "x86_64"))]
impl Offset for u64 {}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use crate::index::engine::range_scan::Offset;

    impl Offset for u64 {
        #[target_feature(enable = "avx2")]
        unsafe fn mask_avx2(chunk: &[u64; 64], low: u64, span: u64) -> u64 {
            // No unsigned 64-bit compare in AVX2: flipping the sign bit of both sides turns the
            // signed one into it. Out of range is `value - low > span`.
            let sign = _mm256_set1_epi64x(i64::MIN);
            let low = _mm256_set1_epi64x(low as i64);
            let limit = _mm256_set1_epi64x((span as i64) ^ i64::MIN);
            let mut out = 0u64;
            for i in 0..16 {
                // SAFETY: 4 values from 4 * i, within the 64 of the chunk.
                let v = unsafe { _mm256_loadu_si256(chunk.as_ptr().add(4 * i).cast()) };
                let shifted = _mm256_xor_si256(_mm256_sub_epi64(v, low), sign);
                let above = _mm256_cmpgt_epi64(shifted, limit);
                out |= (_mm256_movemask_pd(_mm256_castsi256_pd(above)) as u64) << (4 * i);
            }
            !out
        }
    }

    impl Offset for u32 {
        #[target_feature(enable = "avx2")]
        unsafe fn mask_avx2(chunk: &[u32; 64], low: u64, span: u64) -> u64 {
            // In range is `min(value - low, span) == value - low`, unsigned.
            let low = _mm256_set1_epi32(low as u32 as i32);
            let span = _mm256_set1_epi32(span as u32 as i32);
            let mut mask = 0u64;
            for i in 0..8 {
                // SAFETY: 8 values from 8 * i, within the 64 of the chunk.
                let v = unsafe { _mm256_loadu_si256(chunk.as_ptr().add(8 * i).cast()) };
                let offset = _mm256_sub_epi32(v, low);
                let inside = _mm256_cmpeq_epi32(_mm256_min_epu32(offset, span), offset);
                mask |= (_mm256_movemask_ps(_mm256_castsi256_ps(inside)) as u32 as u64) << (8 * i);
            }
            mask
        }
    }

    impl Offset for u16 {
        #[target_feature(enable = "avx2")]
        unsafe fn mask_avx2(chunk: &[u16; 64], low: u64, span: u64) -> u64 {
            let low = _mm256_set1_epi16(low as u16 as i16);
            let span = _mm256_set1_epi16(span as u16 as i16);
            let inside = |i: usize| {
                // SAFETY: 16 values from 16 * i, within the 64 of the chunk.
                let v = unsafe { _mm256_loadu_si256(chunk.as_ptr().add(16 * i).cast()) };
                let offset = _mm256_sub_epi16(v, low);
                _mm256_cmpeq_epi16(_mm256_min_epu16(offset, span), offset)
            };
            let mut mask = 0u64;
            for half in 0..2 {
                // Two registers of 16-bit all-ones/zeros narrow to one of bytes; the pack works
                // per 128-bit lane, and the permute puts the four quarters back in doc order.
                let bytes = _mm256_packs_epi16(inside(2 * half), inside(2 * half + 1));
                let ordered = _mm256_permute4x64_epi64::<0b11_01_10_00>(bytes);
                mask |= (_mm256_movemask_epi8(ordered) as u32 as u64) << (32 * half);
            }
            mask
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Offsets of one width, with `low`/`span` inside its amplitude, as a decoded column makes them.
    fn case<T: Offset + std::fmt::Debug>(
        max: u64,
        from: impl Fn(u64) -> T + Copy,
    ) -> impl Strategy<Value = (Vec<T>, u64, u64, Vec<u64>)> {
        (0..max, 0..=max, 0usize..300)
            .prop_flat_map(move |(a, b, len)| {
                let (low, high) = (a.min(b), a.max(b));
                // Values cluster at the range's edges, where a wrong compare shows.
                let value = prop_oneof![
                    0..=max,
                    Just(low),
                    Just(high),
                    Just(low.saturating_sub(1)),
                    Just((high + 1).min(max)),
                    Just(0),
                    Just(max),
                ]
                .prop_map(from);
                (
                    proptest::collection::vec(value, len),
                    Just(low),
                    Just(high - low),
                    proptest::collection::vec(any::<u64>(), len.div_ceil(64)),
                )
            })
            .prop_map(|(values, low, span, mut candidates)| {
                // A bitmap holds no bit past its last doc.
                if let (Some(last), tail @ 1..) = (candidates.last_mut(), values.len() % 64) {
                    *last &= (1 << tail) - 1;
                }
                (values, low, span, candidates)
            })
    }

    fn check<T: Offset>(values: &[T], low: u64, span: u64, candidates: &[u64]) {
        let want: Vec<u64> = values
            .chunks(64)
            .map(|chunk| {
                (chunk.iter().enumerate())
                    .filter(|(_, v)| {
                        let v: u64 = (**v).into();
                        v >= low && v <= low + span
                    })
                    .fold(0, |mask, (i, _)| mask | 1 << i)
            })
            .collect();
        let mut scanned = vec![0; want.len()];
        scan_words(values, low, span, &mut scanned);
        assert_eq!(scanned, want, "dispatched scan");
        scan_words_scalar(values, low, span, &mut scanned);
        assert_eq!(scanned, want, "scalar scan");
        let kept: Vec<u64> = candidates.iter().zip(&want).map(|(c, w)| c & w).collect();
        let mut retained = candidates.to_vec();
        retain_words(values, low, span, &mut retained);
        assert_eq!(retained, kept, "dispatched retain");
        let mut retained = candidates.to_vec();
        retain_words_scalar(values, low, span, &mut retained);
        assert_eq!(retained, kept, "scalar retain");
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            let mut scanned = vec![0; want.len()];
            // SAFETY: the CPU has AVX2.
            unsafe { scan_words_avx2(values, low, span, &mut scanned) };
            assert_eq!(scanned, want, "AVX2 scan");
            let mut retained = candidates.to_vec();
            // SAFETY: as above.
            unsafe { retain_words_avx2(values, low, span, &mut retained) };
            assert_eq!(retained, kept, "AVX2 retain");
        }
    }

    proptest! {
        #[test]
        fn u16_offsets_scan_alike((values, low, span, cands) in case(u16::MAX as u64, |v| v as u16)) {
            check(&values, low, span, &cands);
        }

        #[test]
        fn u32_offsets_scan_alike((values, low, span, cands) in case(u32::MAX as u64, |v| v as u32)) {
            check(&values, low, span, &cands);
        }

        #[test]
        fn u64_offsets_scan_alike((values, low, span, cands) in case(u64::MAX - 1, |v| v)) {
            check(&values, low, span, &cands);
        }

        #[test]
        fn small_amplitudes_scan_alike((values, low, span, cands) in case(40, |v| v as u16)) {
            check(&values, low, span, &cands);
        }
    }

    #[test]
    fn the_widest_spans_hold_every_value() {
        let values: Vec<u64> = (0..128)
            .map(|i| if i % 2 == 0 { 0 } else { u64::MAX })
            .collect();
        check(&values, 0, u64::MAX, &[u64::MAX; 2]);
        check(&values, u64::MAX, 0, &[u64::MAX; 2]);
        let values: Vec<u16> = (0..128)
            .map(|i| if i % 3 == 0 { 0 } else { u16::MAX })
            .collect();
        check(&values, 0, u16::MAX as u64, &[u64::MAX; 2]);
        check(&values, 1, u16::MAX as u64 - 1, &[u64::MAX; 2]);
    }
}
