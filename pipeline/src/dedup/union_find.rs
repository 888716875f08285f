//! Union-find over document numbers where the root is always the lowest member, so the
//! surviving document of a cluster is the first one in input order.

#[derive(Debug)]
pub struct UnionFind {
    parent: Vec<u64>,
    size: Vec<u32>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u64).collect(),
            size: vec![1; n],
        }
    }

    pub fn find(&mut self, mut x: u64) -> u64 {
        let mut root = x;
        while self.parent[root as usize] != root {
            root = self.parent[root as usize];
        }
        // Path compression.
        while self.parent[x as usize] != root {
            let next = self.parent[x as usize];
            self.parent[x as usize] = root;
            x = next;
        }
        root
    }

    pub fn union(&mut self, a: u64, b: u64) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        let (low, high) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[high as usize] = low;
        self.size[low as usize] += self.size[high as usize];
    }

    /// Size of the cluster whose root is `root`.
    pub fn size(&self, root: u64) -> u64 {
        u64::from(self.size[root as usize])
    }
}
