//! `cargo bench --bench search`: exact 1:N search next to the memory-bandwidth floor, as
//! `facegate bench search` (set BENCH_TEMPLATES=10000,100000,1000000 for the full table).

use facegate_tools::bench::search::{bench_search, format_search_table};

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_TEMPLATES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let mut rows = Vec::new();
    for dim in [512, 128] {
        for &n in &sizes {
            rows.push(bench_search(n, dim, (20_000_000 / n).clamp(20, 200)));
        }
    }
    print!("{}", format_search_table(&rows));
}
