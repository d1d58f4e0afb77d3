import ArgumentParser

extension SingleValueParsingStrategy {
    /// For a numeric option: the next argument is its value even when it starts with `-`, so
    /// that `--interval -1` reaches the command's check, which says what is allowed ("--interval
    /// must be above 0"), instead of the parser's "Missing value for '--interval <interval>'"
    /// (it took `-1` for an option).
    static var number: Self { .unconditional }
}
