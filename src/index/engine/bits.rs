//! One bit per doc of a segment: the bitmap every engine evaluation produces and combines.

use std::sync::Arc;

use tantivy::{DocId, TERMINATED};

/// The bits of one segment.
#[derive(Clone)]
pub struct Bits {
    words: Vec<u64>,
    max_doc: DocId,
}

impl Bits {
    pub fn empty(max_doc: DocId) -> Bits {
        Bits {
            words: vec![0; (max_doc as usize).div_ceil(64)],
            max_doc,
        }
    }

    pub fn full(max_doc: DocId) -> Bits {
        let mut bits = Bits {
            words: vec![u64::MAX; (max_doc as usize).div_ceil(64)],
            max_doc,
        };
        bits.clear_tail();
        bits
    }

    /// Zeroes the bits past `max_doc` in the last word.
    fn clear_tail(&mut self) {
        let tail = self.max_doc % 64;
        if tail != 0
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << tail) - 1;
        }
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }

    pub fn words_mut(&mut self) -> &mut [u64] {
        &mut self.words
    }

    /// The docs, in order.
    pub fn docs(&self) -> impl Iterator<Item = DocId> + '_ {
        self.words.iter().enumerate().flat_map(|(index, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros();
                    rest &= rest - 1;
                    index as DocId * 64 + bit
                })
            })
        })
    }

    #[inline]
    pub fn insert(&mut self, doc: DocId) {
        self.words[doc as usize / 64] |= 1 << (doc % 64);
    }

    #[inline]
    pub fn remove(&mut self, doc: DocId) {
        self.words[doc as usize / 64] &= !(1 << (doc % 64));
    }

    /// Sets ascending docs, into a bitmap holding no doc past the word of the first of them
    /// (as when one term's blocks of postings arrive in order). Each doc stores its whole word,
    /// with the bits of the docs before it in that word, so no doc waits on the previous one's
    /// store and no branch depends on where words end: dense postings cost about a cycle or two
    /// per doc.
    pub fn insert_sorted(&mut self, docs: &[DocId]) {
        let (Some(&first), Some(&last)) = (docs.first(), docs.last()) else {
            return;
        };
        let mut at = first as usize / 64;
        debug_assert!(docs.is_sorted(), "insert_sorted of unsorted docs");
        debug_assert!(
            self.words[at + 1..=last as usize / 64]
                .iter()
                .all(|&w| w == 0),
            "insert_sorted past set bits"
        );
        let mut word = self.words[at];
        for &doc in docs {
            let next = doc as usize / 64;
            // A new word starts empty; the same word keeps the bits set so far.
            word &= 0u64.wrapping_sub((next == at) as u64);
            word |= 1 << (doc % 64);
            self.words[next] = word;
            at = next;
        }
    }

    #[inline]
    pub fn contains(&self, doc: DocId) -> bool {
        self.words[doc as usize / 64] & (1 << (doc % 64)) != 0
    }

    pub fn len(&self) -> u64 {
        self.words.iter().map(|w| w.count_ones() as u64).sum()
    }

    /// `a AND b` as new bits, in one pass over both (no copy of `a` first).
    pub fn and_of(a: &Bits, b: &Bits) -> Bits {
        Bits {
            words: (a.words.iter().zip(&b.words)).map(|(a, b)| a & b).collect(),
            max_doc: a.max_doc,
        }
    }

    /// `a OR b` as new bits, in one pass over both.
    pub fn or_of(a: &Bits, b: &Bits) -> Bits {
        Bits {
            words: (a.words.iter().zip(&b.words)).map(|(a, b)| a | b).collect(),
            max_doc: a.max_doc,
        }
    }

    pub fn and(&mut self, other: &Bits) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    pub fn or(&mut self, other: &Bits) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    pub fn and_not(&mut self, other: &Bits) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= !b;
        }
    }

    /// Keeps the docs for which `keep` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(DocId) -> bool) {
        for (index, word) in self.words.iter_mut().enumerate() {
            let mut rest = *word;
            while rest != 0 {
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                if !keep(index as u32 * 64 + bit) {
                    *word &= !(1u64 << bit);
                }
            }
        }
    }

    /// The first doc at or after `from`, or `TERMINATED`.
    pub fn next_from(&self, from: DocId) -> DocId {
        if from >= self.max_doc {
            return TERMINATED;
        }
        let mut index = from as usize / 64;
        let mut word = self.words[index] & (u64::MAX << (from % 64));
        loop {
            if word != 0 {
                return index as u32 * 64 + word.trailing_zeros();
            }
            index += 1;
            match self.words.get(index) {
                Some(&next) => word = next,
                None => return TERMINATED,
            }
        }
    }
}

/// Docs made for one query, or kept in the cache (read in place, never changed).
pub enum Operand {
    Owned(Bits),
    Cached(Arc<Bits>),
}

impl Operand {
    pub fn into_owned(self) -> Bits {
        match self {
            Operand::Owned(bits) => bits,
            Operand::Cached(bits) => Bits::clone(&bits),
        }
    }

    /// `a` and `b` combined by a commutative operation: `apply` in place into the one made for
    /// this query, or `of` into new bits when both are cached.
    pub fn combine(
        a: Operand,
        b: Operand,
        apply: fn(&mut Bits, &Bits),
        of: fn(&Bits, &Bits) -> Bits,
    ) -> Bits {
        match (a, b) {
            (Operand::Owned(mut bits), other) | (other, Operand::Owned(mut bits)) => {
                apply(&mut bits, &other);
                bits
            }
            (Operand::Cached(a), Operand::Cached(b)) => of(&a, &b),
        }
    }
}

impl std::ops::Deref for Operand {
    type Target = Bits;

    fn deref(&self) -> &Bits {
        match self {
            Operand::Owned(bits) => bits,
            Operand::Cached(bits) => bits,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn operands_combine_alike_owned_or_cached_in_either_order() {
        let of = |docs: &[DocId]| {
            let mut bits = Bits::empty(200);
            docs.iter().for_each(|&doc| bits.insert(doc));
            bits
        };
        let (a, b) = (of(&[1, 64, 130, 199]), of(&[1, 65, 130]));
        let forms = |bits: &Bits| {
            [
                Operand::Owned(bits.clone()),
                Operand::Cached(Arc::new(bits.clone())),
            ]
        };
        for (x, y) in forms(&a)
            .into_iter()
            .flat_map(|x| forms(&b).map(move |y| (x.clone_form(), y)))
        {
            let and: Vec<DocId> =
                Operand::combine(x.clone_form(), y.clone_form(), Bits::and, Bits::and_of)
                    .docs()
                    .collect();
            let or: Vec<DocId> = Operand::combine(y, x, Bits::or, Bits::or_of)
                .docs()
                .collect();
            assert_eq!(and, [1, 130]);
            assert_eq!(or, [1, 64, 65, 130, 199]);
        }
    }

    impl Operand {
        fn clone_form(&self) -> Operand {
            match self {
                Operand::Owned(bits) => Operand::Owned(bits.clone()),
                Operand::Cached(bits) => Operand::Cached(bits.clone()),
            }
        }
    }

    proptest! {
        /// Ascending docs arriving in blocks, as postings do, set the bits one insert each sets.
        #[test]
        fn sorted_blocks_set_the_bits_of_their_docs(
            docs in proptest::collection::btree_set(0u32..3000, 0..600),
            cuts in proptest::collection::vec(0usize..600, 0..8),
        ) {
            let docs: Vec<DocId> = docs.into_iter().collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(docs.len())).collect();
            cuts.sort();
            let mut bits = Bits::empty(3000);
            let mut from = 0;
            for cut in cuts.into_iter().chain([docs.len()]) {
                bits.insert_sorted(&docs[from..cut]);
                from = cut;
            }
            let mut want = Bits::empty(3000);
            for &doc in &docs {
                want.insert(doc);
            }
            prop_assert_eq!(bits.words(), want.words());
            let set: BTreeSet<DocId> = bits.docs().collect();
            prop_assert_eq!(set.into_iter().collect::<Vec<_>>(), docs);
        }
    }
}
