//! The docs of one segment that an engine evaluation produces and combines: one bit per doc,
//! or, for a set of few docs, the docs themselves.
//!
//! A selective filter (one email, a short `IN` list, a rare tag) matches a few docs of millions.
//! As bitmaps, each of its nodes would cost `max_doc` bits to allocate, zero and combine: 1.2 MB
//! and ~20k words per node in a segment of ten million docs. A set holding at most one doc in
//! [`SPARSE_SHARE`] is kept as its ascending doc ids instead (smaller than its bits), and every
//! operation with it costs its docs: `sparse AND dense` tests each of the sparse docs, and only
//! `OR` can grow a sparse set back into bits.

use std::sync::Arc;

use tantivy::{DocId, TERMINATED};

/// A set of at most one doc in this many of its segment is kept as doc ids (32 bits each)
/// rather than as one bit per doc.
pub const SPARSE_SHARE: u64 = 32;

/// Docs of one segment.
#[derive(Clone)]
pub struct Bits {
    form: Form,
    max_doc: DocId,
}

#[derive(Clone)]
enum Form {
    /// One bit per doc.
    Dense(Vec<u64>),
    /// The docs, ascending.
    Sparse(Vec<DocId>),
}

/// Whether `len` docs of `max_doc` are few enough to keep as doc ids.
pub fn is_sparse_share(len: u64, max_doc: DocId) -> bool {
    len * SPARSE_SHARE < u64::from(max_doc)
}

impl Bits {
    /// No doc, as bits (to be filled through [`Bits::words_mut`] or inserts).
    pub fn empty(max_doc: DocId) -> Bits {
        Bits {
            form: Form::Dense(vec![0; (max_doc as usize).div_ceil(64)]),
            max_doc,
        }
    }

    /// No doc, without allocating.
    pub fn none(max_doc: DocId) -> Bits {
        Bits {
            form: Form::Sparse(Vec::new()),
            max_doc,
        }
    }

    pub fn full(max_doc: DocId) -> Bits {
        let mut bits = Bits {
            form: Form::Dense(vec![u64::MAX; (max_doc as usize).div_ceil(64)]),
            max_doc,
        };
        bits.clear_tail();
        bits
    }

    /// The ascending `docs` (all below `max_doc`), in the form their number calls for.
    pub fn of_sorted(max_doc: DocId, docs: Vec<DocId>) -> Bits {
        debug_assert!(docs.is_sorted() && docs.last().is_none_or(|&d| d < max_doc));
        if is_sparse_share(docs.len() as u64, max_doc) {
            return Bits {
                form: Form::Sparse(docs),
                max_doc,
            };
        }
        let mut bits = Bits::empty(max_doc);
        bits.insert_sorted(&docs);
        bits
    }

    /// Zeroes the bits past `max_doc` in the last word.
    fn clear_tail(&mut self) {
        let tail = self.max_doc % 64;
        if tail != 0
            && let Form::Dense(words) = &mut self.form
            && let Some(last) = words.last_mut()
        {
            *last &= (1u64 << tail) - 1;
        }
    }

    /// The bits, when the docs are kept as bits.
    pub fn dense_words(&self) -> Option<&[u64]> {
        match &self.form {
            Form::Dense(words) => Some(words),
            Form::Sparse(_) => None,
        }
    }

    /// The docs, when they are kept as doc ids.
    pub fn sparse_docs(&self) -> Option<&[DocId]> {
        match &self.form {
            Form::Dense(_) => None,
            Form::Sparse(docs) => Some(docs),
        }
    }

    /// The bits, turning doc ids into bits first.
    pub fn words_mut(&mut self) -> &mut [u64] {
        if let Form::Sparse(docs) = &self.form {
            let mut dense = Bits::empty(self.max_doc);
            dense.insert_sorted(docs);
            self.form = dense.form;
        }
        match &mut self.form {
            Form::Dense(words) => words,
            Form::Sparse(_) => unreachable!("turned into bits above"),
        }
    }

    /// The docs, in order.
    pub fn docs(&self) -> Docs<'_> {
        match &self.form {
            Form::Dense(words) => Docs::Dense {
                words,
                index: 0,
                rest: words.first().copied().unwrap_or(0),
            },
            Form::Sparse(docs) => Docs::Sparse(docs.iter()),
        }
    }

    #[inline]
    pub fn insert(&mut self, doc: DocId) {
        match &mut self.form {
            Form::Dense(words) => words[doc as usize / 64] |= 1 << (doc % 64),
            Form::Sparse(docs) => {
                if let Err(at) = docs.binary_search(&doc) {
                    docs.insert(at, doc);
                }
            }
        }
    }

    #[inline]
    pub fn remove(&mut self, doc: DocId) {
        match &mut self.form {
            Form::Dense(words) => words[doc as usize / 64] &= !(1 << (doc % 64)),
            Form::Sparse(docs) => {
                if let Ok(at) = docs.binary_search(&doc) {
                    docs.remove(at);
                }
            }
        }
    }

    /// Sets ascending docs, into a set holding no doc past the word of the first of them
    /// (as when one term's blocks of postings arrive in order). Each doc stores its whole word,
    /// with the bits of the docs before it in that word, so no doc waits on the previous one's
    /// store and no branch depends on where words end: dense postings cost about a cycle or two
    /// per doc.
    pub fn insert_sorted(&mut self, docs: &[DocId]) {
        let (Some(&first), Some(&last)) = (docs.first(), docs.last()) else {
            return;
        };
        let words = match &mut self.form {
            Form::Dense(words) => words,
            Form::Sparse(held) => {
                for &doc in docs {
                    if held.last().is_none_or(|&l| l < doc) {
                        held.push(doc);
                    } else if let Err(at) = held.binary_search(&doc) {
                        held.insert(at, doc);
                    }
                }
                return;
            }
        };
        let mut at = first as usize / 64;
        debug_assert!(docs.is_sorted(), "insert_sorted of unsorted docs");
        debug_assert!(
            words[at + 1..=last as usize / 64].iter().all(|&w| w == 0),
            "insert_sorted past set bits"
        );
        let mut word = words[at];
        for &doc in docs {
            let next = doc as usize / 64;
            // A new word starts empty; the same word keeps the bits set so far.
            word &= 0u64.wrapping_sub((next == at) as u64);
            word |= 1 << (doc % 64);
            words[next] = word;
            at = next;
        }
    }

    #[inline]
    pub fn contains(&self, doc: DocId) -> bool {
        match &self.form {
            Form::Dense(words) => words[doc as usize / 64] & (1 << (doc % 64)) != 0,
            Form::Sparse(docs) => docs.binary_search(&doc).is_ok(),
        }
    }

    pub fn len(&self) -> u64 {
        match &self.form {
            Form::Dense(words) => words.iter().map(|w| w.count_ones() as u64).sum(),
            Form::Sparse(docs) => docs.len() as u64,
        }
    }

    /// `a AND b` as new bits, in one pass over both (no copy of `a` first).
    pub fn and_of(a: &Bits, b: &Bits) -> Bits {
        let form = match (&a.form, &b.form) {
            (Form::Dense(a), Form::Dense(b)) => {
                Form::Dense(a.iter().zip(b).map(|(a, b)| a & b).collect())
            }
            (Form::Sparse(docs), _) => Form::Sparse(only_in(docs, b)),
            (_, Form::Sparse(docs)) => Form::Sparse(only_in(docs, a)),
        };
        Bits {
            form,
            max_doc: a.max_doc,
        }
    }

    /// `a OR b` as new bits, in one pass over both.
    pub fn or_of(a: &Bits, b: &Bits) -> Bits {
        match (&a.form, &b.form) {
            (Form::Dense(x), Form::Dense(y)) => Bits {
                form: Form::Dense(x.iter().zip(y).map(|(x, y)| x | y).collect()),
                max_doc: a.max_doc,
            },
            (Form::Sparse(_), _) => {
                let mut union = b.clone();
                union.or(a);
                union
            }
            (_, Form::Sparse(_)) => {
                let mut union = a.clone();
                union.or(b);
                union
            }
        }
    }

    pub fn and(&mut self, other: &Bits) {
        let form = match (&mut self.form, &other.form) {
            (Form::Dense(words), Form::Dense(others)) => {
                for (a, b) in words.iter_mut().zip(others) {
                    *a &= b;
                }
                return;
            }
            (Form::Dense(_), Form::Sparse(docs)) => Form::Sparse(only_in(docs, self)),
            (Form::Sparse(docs), _) => Form::Sparse(only_in(docs, other)),
        };
        self.form = form;
    }

    pub fn or(&mut self, other: &Bits) {
        match (&mut self.form, &other.form) {
            (Form::Dense(words), Form::Dense(others)) => {
                for (a, b) in words.iter_mut().zip(others) {
                    *a |= b;
                }
            }
            (Form::Dense(words), Form::Sparse(docs)) => {
                for &doc in docs {
                    words[doc as usize / 64] |= 1 << (doc % 64);
                }
            }
            (Form::Sparse(docs), Form::Dense(_)) => {
                let docs = std::mem::take(docs);
                self.form = other.form.clone();
                for doc in docs {
                    self.insert(doc);
                }
            }
            (Form::Sparse(docs), Form::Sparse(others)) => {
                let union = merge(docs, others);
                *self = Bits::of_sorted(self.max_doc, union);
            }
        }
    }

    pub fn and_not(&mut self, other: &Bits) {
        match (&mut self.form, &other.form) {
            (Form::Dense(words), Form::Dense(others)) => {
                for (a, b) in words.iter_mut().zip(others) {
                    *a &= !b;
                }
            }
            (Form::Dense(words), Form::Sparse(docs)) => {
                for &doc in docs {
                    words[doc as usize / 64] &= !(1 << (doc % 64));
                }
            }
            (Form::Sparse(docs), _) => docs.retain(|&doc| !other.contains(doc)),
        }
    }

    /// Keeps the docs for which `keep` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(DocId) -> bool) {
        let words = match &mut self.form {
            Form::Dense(words) => words,
            Form::Sparse(docs) => return docs.retain(|&doc| keep(doc)),
        };
        for (index, word) in words.iter_mut().enumerate() {
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
        let words = match &self.form {
            Form::Dense(words) => words,
            Form::Sparse(docs) => {
                let at = docs.partition_point(|&doc| doc < from);
                return docs.get(at).copied().unwrap_or(TERMINATED);
            }
        };
        let mut index = from as usize / 64;
        let mut word = words[index] & (u64::MAX << (from % 64));
        loop {
            if word != 0 {
                return index as u32 * 64 + word.trailing_zeros();
            }
            index += 1;
            match words.get(index) {
                Some(&next) => word = next,
                None => return TERMINATED,
            }
        }
    }
}

#[cfg(test)]
impl Bits {
    /// The ascending `docs` as doc ids or as bits, whatever their number.
    pub fn in_form(max_doc: DocId, docs: &[DocId], sparse: bool) -> Bits {
        match sparse {
            true => Bits {
                form: Form::Sparse(docs.to_vec()),
                max_doc,
            },
            false => {
                let mut bits = Bits::empty(max_doc);
                bits.insert_sorted(docs);
                bits
            }
        }
    }
}

/// The `docs` that `bits` holds.
fn only_in(docs: &[DocId], bits: &Bits) -> Vec<DocId> {
    match &bits.form {
        Form::Dense(words) => (docs.iter().copied())
            .filter(|&doc| words[doc as usize / 64] & (1 << (doc % 64)) != 0)
            .collect(),
        Form::Sparse(others) => {
            let (mut a, mut b, mut both) =
                (docs.iter().peekable(), others.iter().peekable(), vec![]);
            while let (Some(&&x), Some(&&y)) = (a.peek(), b.peek()) {
                match x.cmp(&y) {
                    std::cmp::Ordering::Less => drop(a.next()),
                    std::cmp::Ordering::Greater => drop(b.next()),
                    std::cmp::Ordering::Equal => {
                        both.push(x);
                        a.next();
                        b.next();
                    }
                }
            }
            both
        }
    }
}

/// The ascending union of two ascending lists.
fn merge(a: &[DocId], b: &[DocId]) -> Vec<DocId> {
    let mut union = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        union.push(x.min(y));
        i += (x <= y) as usize;
        j += (y <= x) as usize;
    }
    union.extend_from_slice(&a[i..]);
    union.extend_from_slice(&b[j..]);
    union
}

/// The docs of [`Bits`], in order.
pub enum Docs<'a> {
    Dense {
        words: &'a [u64],
        index: usize,
        rest: u64,
    },
    Sparse(std::slice::Iter<'a, DocId>),
}

impl Iterator for Docs<'_> {
    type Item = DocId;

    #[inline]
    fn next(&mut self) -> Option<DocId> {
        match self {
            Docs::Dense { words, index, rest } => loop {
                if *rest != 0 {
                    let bit = rest.trailing_zeros();
                    *rest &= *rest - 1;
                    return Some(*index as DocId * 64 + bit);
                }
                *index += 1;
                *rest = *words.get(*index)?;
            },
            Docs::Sparse(docs) => docs.next().copied(),
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
            prop_assert_eq!(bits.dense_words(), want.dense_words());
            let set: BTreeSet<DocId> = bits.docs().collect();
            prop_assert_eq!(set.into_iter().collect::<Vec<_>>(), docs);
        }
    }
}
