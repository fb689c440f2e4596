//! The column sort kernel: a thread per column, an insertion sort in registers.

use cubecl::prelude::*;

/// Whether `a` sorts after `b`: NaN after every number, and otherwise `a > b` (so that equal
/// values, `-0.0` and `0.0` among them, keep their order).
#[cube]
fn after(a: f32, b: f32) -> bool {
    (f32::is_nan(a) && !f32::is_nan(b)) || a > b
}

/// `x` (`[n, columns]`, contiguous) with each column sorted ascending into `out`: NaN last,
/// equal values in their order (a stable insertion sort of at most `max` values per thread).
#[cube(launch)]
pub(crate) fn sort_columns_kernel(
    x: &[f32],
    out: &mut [f32],
    columns: u32,
    n: u32,
    #[comptime] max: usize,
) {
    let c = u32::cast_from(ABSOLUTE_POS);
    if c >= columns {
        terminate!();
    }
    let mut sorted = Array::<f32>::new(max);
    for l in 0..n {
        let y = x[(l * columns + c) as usize];
        // Move the sorted values after `y` up one place, then put `y` in the gap.
        let mut at = l;
        loop {
            if at == 0u32 {
                break;
            }
            let before = sorted[(at - 1) as usize];
            if !after(before, y) {
                break;
            }
            sorted[at as usize] = before;
            at -= 1;
        }
        sorted[at as usize] = y;
    }
    for l in 0..n {
        out[(l * columns + c) as usize] = sorted[l as usize];
    }
}
