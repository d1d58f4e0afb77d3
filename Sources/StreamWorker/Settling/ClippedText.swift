extension String {
    /// The text cut to at most `limit` bytes of UTF-8 (at a Unicode scalar's start, so always
    /// valid UTF-8; a character of several scalars, such as a flag, may lose its last ones),
    /// with "… (N bytes)" saying how long it was; itself when it fits.
    ///
    /// Why: a dead letter's reason and error, and the worker's log lines, quote what a handler
    /// said, which can quote the entry: an entity id of 1 MB made a reason and an error of 1 MB
    /// each (the letter three times the entry), a log line of 1 MB per letter, and every
    /// dashboard poll 2 MB per letter (a trial). Public: the dashboard cuts what it shows so.
    public func clipped(toBytes limit: Int) -> String {
        guard utf8.count > limit else { return self }
        var end = utf8.index(utf8.startIndex, offsetBy: limit)
        // Back to the start of a scalar: a continuation byte is 0b10xxxxxx.
        while end > utf8.startIndex, (utf8[end] & 0xC0) == 0x80 { end = utf8.index(before: end) }
        return String(self[..<end]) + "… (\(utf8.count) bytes)"
    }
}

/// How much of a handler's words a dead letter and a log line keep.
enum ClippedText {
    /// A dead letter's reason and its error, each.
    static let deadLetter = 4_096
    /// A value in a worker's log line.
    static let log = 1_024
}
