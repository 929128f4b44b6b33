//! Links the `weft-bgpd` executable at a fixed address (not position independent).
//!
//! A position-independent executable has its pointer tables (vtables, tables of string slices:
//! about 0.6 MB of `.data.rel.ro` in weft-bgpd, most of it from the datastore clients) written
//! by the dynamic loader at every start, which makes those pages private to each process. One
//! weft-bgpd runs on every node, and in a lab many run on one machine: fixed addresses keep those
//! pages shared and clean, and cut an idle daemon's private memory from about 1 MB to 0.35 MB.
//! Shared libraries, the heap and the stacks are still placed at random; Go daemons (GoBGP,
//! Calico, kube-router) ship as fixed-address executables by default.

fn main() {
    println!("cargo:rustc-link-arg-bin=weft-bgpd=-no-pie");
}
