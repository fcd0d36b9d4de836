fn main() {
    // Stay mapped once loaded (DF_1_NODELETE): shadow dlcloses the provider
    // from an atexit handler, and podman/newuidmap may look it up again; a
    // Rust thread-local destructor pending at dlclose would point into
    // unmapped code.
    println!("cargo:rustc-link-arg-cdylib=-Wl,-z,nodelete");
}
