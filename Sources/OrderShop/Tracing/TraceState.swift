/// The W3C `tracestate` a process takes from a request or an event: the list as the Trace
/// Context specification (level 1, §3.3) writes it, or nothing. A list with a member that is
/// not `key=value` in its grammar (a key with capitals or spaces, a value with a comma, an
/// equals sign, a control character or a byte past ASCII), with a key twice, with more than 32
/// members or longer than 512 bytes is dropped whole, as the specification lets a vendor do
/// with a list it cannot parse; the trace itself goes on. Empty members (", ,") are left out.
///
/// Why: such lists reached the events as they came (a trial's `k=\u{7}bell`, `a=1,a=2`,
/// `UPPER=1`), and from there every request and mail of the trace, where a collector or a
/// vendor's SDK downstream may refuse the whole header.
enum TraceState {
    static let maxMembers = 32
    static let maxBytes = 512

    /// The list, members trimmed and joined by ",", or nil when it is empty or not valid.
    static func valid(_ header: String) -> String? {
        let bytes = Array(header.utf8)
        guard !bytes.isEmpty, bytes.count <= maxBytes else { return nil }
        var members: [Substring] = []
        var keys = Set<Substring>()
        for piece in header.split(separator: ",", omittingEmptySubsequences: false) {
            let member = piece.trimmingOWS()
            if member.isEmpty { continue }
            guard members.count < maxMembers, let equals = member.firstIndex(of: "="),
                isKey(member[..<equals]), isValue(member[member.index(after: equals)...]),
                keys.insert(member[..<equals]).inserted
            else { return nil }
            members.append(member)
        }
        return members.isEmpty ? nil : members.joined(separator: ",")
    }

    /// simple-key, or tenant-id "@" system-id.
    private static func isKey(_ key: Substring) -> Bool {
        let utf8 = Array(key.utf8)
        guard let at = utf8.firstIndex(of: UInt8(ascii: "@")) else {
            return utf8.count >= 1 && utf8.count <= 256 && isLowerAlpha(utf8[0]) && utf8.dropFirst().allSatisfy(isKeyByte)
        }
        let tenant = utf8[..<at], system = utf8[(at + 1)...]
        return tenant.count >= 1 && tenant.count <= 241 && (isLowerAlpha(tenant[tenant.startIndex]) || isDigit(tenant[tenant.startIndex]))
            && tenant.dropFirst().allSatisfy(isKeyByte)
            && system.count >= 1 && system.count <= 14 && isLowerAlpha(system[system.startIndex]) && system.dropFirst().allSatisfy(isKeyByte)
    }

    /// 0*255(chr) nblk-chr: printable ASCII but "," and "=", spaces inside only.
    private static func isValue(_ value: Substring) -> Bool {
        let utf8 = Array(value.utf8)
        guard let last = utf8.last, utf8.count <= 256, last != 0x20 else { return false }
        return utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E && $0 != UInt8(ascii: ",") && $0 != UInt8(ascii: "=") }
    }

    private static func isLowerAlpha(_ b: UInt8) -> Bool { b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z") }
    private static func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }
    private static func isKeyByte(_ b: UInt8) -> Bool {
        isLowerAlpha(b) || isDigit(b) || b == UInt8(ascii: "_") || b == UInt8(ascii: "-") || b == UInt8(ascii: "*") || b == UInt8(ascii: "/")
    }
}

extension Substring {
    /// Without the spaces and tabs around it (HTTP's optional whitespace).
    fileprivate func trimmingOWS() -> Substring {
        var s = self
        while let first = s.first, first == " " || first == "\t" { s = s.dropFirst() }
        while let last = s.last, last == " " || last == "\t" { s = s.dropLast() }
        return s
    }
}
