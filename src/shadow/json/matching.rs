//! Pairing the elements of two unordered arrays.

use std::cmp::Ordering;

use super::canon::Canon;

/// Pairs off equal canonical forms (both sorted); returns the unpaired
/// positions on each side, in sorted order.
pub(super) fn unpaired_equal(
    cx: &[(usize, Canon<'_>)],
    cy: &[(usize, Canon<'_>)],
) -> (Vec<usize>, Vec<usize>) {
    let (mut a, mut b) = (0, 0);
    let (mut left, mut right) = (Vec::new(), Vec::new());
    while a < cx.len() && b < cy.len() {
        match cx[a].1.cmp(&cy[b].1) {
            Ordering::Equal => {
                a += 1;
                b += 1;
            }
            Ordering::Less => {
                left.push(a);
                a += 1;
            }
            Ordering::Greater => {
                right.push(b);
                b += 1;
            }
        }
    }
    left.extend(a..cx.len());
    right.extend(b..cy.len());
    (left, right)
}

/// A maximum bipartite matching (Kuhn's augmenting paths) between `n` left
/// and `m` right elements, `compat[a * m + b]` saying which may pair: for
/// each right element, its left partner.
pub(super) fn max_matching(compat: &[bool], n: usize, m: usize) -> Vec<Option<usize>> {
    // Recursion depth is at most the number of pairs so far, which is at
    // most min(n, m) <= sqrt(MATCHING_BUDGET).
    fn augment(
        a: usize,
        compat: &[bool],
        m: usize,
        seen: &mut [bool],
        left_of: &mut [Option<usize>],
    ) -> bool {
        for b in 0..m {
            if compat[a * m + b] && !seen[b] {
                seen[b] = true;
                let free = match left_of[b] {
                    None => true,
                    Some(other) => augment(other, compat, m, seen, left_of),
                };
                if free {
                    left_of[b] = Some(a);
                    return true;
                }
            }
        }
        false
    }
    let mut left_of = vec![None; m];
    let mut seen = vec![false; m];
    for a in 0..n {
        seen.fill(false);
        augment(a, compat, m, &mut seen, &mut left_of);
    }
    left_of
}
