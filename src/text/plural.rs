//! Counts in words: "1 batch", "2 batches".

/// `n` with the singular or the plural noun.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(super::plural(1, "batch", "batches"), "1 batch");
        assert_eq!(super::plural(0, "batch", "batches"), "0 batches");
        assert_eq!(super::plural(2, "batch", "batches"), "2 batches");
    }
}
