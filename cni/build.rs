//! Links the `weft-cni` executable at a fixed address (not position independent).
//!
//! The container runtime starts weft-cni for every ADD and DEL. As a position-independent
//! executable its ~33,000 pointers (vtables, tables of string slices) are rewritten by the
//! dynamic loader at every start, dirtying about 0.6 MB of pages; at a fixed address they are
//! read as they are on disk. Shared libraries, the heap and the stacks are still placed at
//! random.

fn main() {
    println!("cargo:rustc-link-arg-bin=weft-cni=-no-pie");
}
