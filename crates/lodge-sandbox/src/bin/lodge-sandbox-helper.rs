//! The sandbox helper as a binary of its own, for this crate's tests and for programs
//! that do not dispatch to [`lodge_sandbox::run_helper`] themselves. `lodge` runs the
//! same code as `lodge sandbox-helper`.

fn main() {
    lodge_sandbox::helper::run_init_if_asked();
    lodge_sandbox::run_helper(std::env::args_os().skip(1))
}
