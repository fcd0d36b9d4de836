fn main() {
    // Stay mapped once loaded (DF_1_NODELETE). libpam dlopens the module at
    // every pam_start and dlcloses it at pam_end; without this, a
    // long-lived host (JupyterHub's pamela, a keeper benchmark, a busy sshd
    // master) maps, relocates and unmaps ~1 MB per session, and a Rust
    // thread-local destructor pending at dlclose would point into unmapped
    // code. Statics are still never used to carry state between handles.
    println!("cargo:rustc-link-arg-cdylib=-Wl,-z,nodelete");
}
