//! Transformation pipelines, interned into a prefix tree at init, and the per-request cache
//! that transforms each value with each pipeline (prefix) at most once.
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::transform::Transform;

/// A pipeline: a node of the prefix tree (0 is the empty pipeline).
pub type PipelineId = u32;

/// Every pipeline the rules use; a node is its parent pipeline plus one transformation, so
/// `urlDecodeUni,lowercase` shares its first step with `urlDecodeUni,htmlEntityDecode`.
#[derive(Debug, Default)]
pub struct Pipelines {
    /// Node `i + 1`: (parent, last transformation).
    nodes: Vec<(PipelineId, Transform)>,
}

impl Pipelines {
    /// The id of this sequence of transformations (created on first use).
    pub fn intern(&mut self, transforms: &[Transform]) -> PipelineId {
        let mut node = 0;
        for &t in transforms {
            node = match self.nodes.iter().position(|&(p, t2)| p == node && t2 == t) {
                Some(i) => i as PipelineId + 1,
                None => {
                    self.nodes.push((node, t));
                    self.nodes.len() as PipelineId
                }
            };
        }
        node
    }

    fn step(&self, node: PipelineId) -> (PipelineId, Transform) {
        self.nodes[node as usize - 1]
    }

    /// The nodes from the first transformation to `node` (empty for the empty pipeline).
    pub fn path(&self, mut node: PipelineId) -> Vec<PipelineId> {
        let mut path = Vec::new();
        while node != 0 {
            path.push(node);
            node = self.step(node).0;
        }
        path.reverse();
        path
    }

    /// Applies the pipeline without caching (for values that change during a request).
    pub fn apply<'a>(&self, node: PipelineId, value: &'a [u8]) -> Cow<'a, [u8]> {
        let mut out = Cow::Borrowed(value);
        for n in self.path(node) {
            let t = self.step(n).1;
            if let Some(v) = changed(t, &out) {
                out = Cow::Owned(v);
            }
        }
        out
    }
}

/// Where a value comes from, so its transformations can be cached: a request item that does
/// not change during the request. [`Source::NONE`] marks values that are not cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(pub u32);

impl Source {
    /// Not cacheable (TX, MATCHED_VARS, counts).
    pub const NONE: Source = Source(u32::MAX);

    /// Item `index` of the request collection numbered `kind`.
    pub fn new(kind: u8, index: usize) -> Source {
        Source(((kind as u32) << 24) | (index as u32 & 0x00ff_ffff))
    }
}

/// A multiplicative hasher for the cache's small integer keys (SipHash is most of a cache
/// lookup's cost otherwise).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// Results of transforming request values during one request.
#[derive(Default)]
pub struct TransformCache {
    /// (source, pipeline) -> index into `store`, or `None` when the pipeline left the value
    /// unchanged.
    map: HashMap<(Source, PipelineId), Option<usize>, BuildHasherDefault<IdHasher>>,
    store: Vec<Vec<u8>>,
}

impl TransformCache {
    /// An empty cache with room for `n` results before it grows.
    pub fn with_capacity(n: usize) -> TransformCache {
        TransformCache {
            map: HashMap::with_capacity_and_hasher(n, Default::default()),
            store: Vec::with_capacity(n / 4),
        }
    }

    /// `raw` (the value of `source`) transformed by pipeline `node`.
    pub fn get<'a>(
        &'a mut self,
        pipes: &Pipelines,
        node: PipelineId,
        source: Source,
        raw: &'a [u8],
    ) -> Cow<'a, [u8]> {
        if source == Source::NONE {
            return pipes.apply(node, raw);
        }
        match self.ensure(pipes, node, source, raw) {
            None => Cow::Borrowed(raw),
            Some(i) => Cow::Borrowed(&self.store[i]),
        }
    }

    fn ensure(
        &mut self,
        pipes: &Pipelines,
        node: PipelineId,
        source: Source,
        raw: &[u8],
    ) -> Option<usize> {
        if node == 0 {
            return None;
        }
        if let Some(&hit) = self.map.get(&(source, node)) {
            return hit;
        }
        let (parent, t) = pipes.step(node);
        let from = self.ensure(pipes, parent, source, raw);
        let input: &[u8] = match from {
            None => raw,
            Some(i) => &self.store[i],
        };
        let result = match changed(t, input) {
            None => from,
            Some(v) => {
                self.store.push(v);
                Some(self.store.len() - 1)
            }
        };
        self.map.insert((source, node), result);
        result
    }
}

/// `t` applied to `input`, or `None` when it left it unchanged (a borrowed result of the
/// same length: transformations like `trim` borrow a shorter slice).
fn changed(t: Transform, input: &[u8]) -> Option<Vec<u8>> {
    match t.apply(input) {
        Cow::Borrowed(s) if s.len() == input.len() => None,
        Cow::Borrowed(s) => Some(s.to_vec()),
        Cow::Owned(v) => Some(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_share_prefixes() {
        let mut p = Pipelines::default();
        let a = p.intern(&[Transform::Lowercase, Transform::Trim]);
        let b = p.intern(&[Transform::Lowercase]);
        let c = p.intern(&[Transform::Lowercase, Transform::Trim]);
        assert_eq!(a, c);
        assert_eq!(p.path(a), vec![b, a]);
        assert_eq!(p.intern(&[]), 0);
        assert_eq!(&*p.apply(a, b" AbC "), b"abc");
    }

    #[test]
    fn cache_transforms_once_and_borrows_unchanged_values() {
        let mut p = Pipelines::default();
        let low = p.intern(&[Transform::Lowercase]);
        let mut cache = TransformCache::default();
        let s = Source::new(1, 0);
        assert!(matches!(cache.get(&p, low, s, b"abc"), Cow::Borrowed(_)));
        assert_eq!(&*cache.get(&p, low, Source::new(1, 1), b"ABC"), b"abc");
        assert_eq!(cache.store.len(), 1);
        assert_eq!(&*cache.get(&p, low, Source::new(1, 1), b"ABC"), b"abc");
        assert_eq!(cache.store.len(), 1);
        assert_eq!(&*cache.get(&p, low, Source::NONE, b"XY"), b"xy");
    }
}
