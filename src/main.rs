//! dbt-herd's binary: everything is in the library's `entry::main`.

fn main() {
    std::process::exit(dbt_herd::entry::main());
}
