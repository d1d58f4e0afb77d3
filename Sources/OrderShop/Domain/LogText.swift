/// Text from requests and events made safe for one log line: control characters (NUL, BEL, ESC,
/// newlines, DEL, C1) and the bidirectional overrides and isolates (U+202A-202E, U+2066-2069,
/// U+200E-200F, U+061C) are written as `\u{..}` escapes, so a name cannot ring a terminal's bell,
/// recolour it, forge a second log line, or make the rest of its line read backwards; long
/// text is cut with a marker.
public enum LogText {
    public static func escaped(_ text: some StringProtocol, limit: Int = 200) -> String {
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if count >= limit {
                out += "…"
                break
            }
            count += 1
            switch scalar.value {
            case 0x00..<0x20, 0x7F..<0xA0, 0x2028, 0x2029: out += written(scalar)
            case 0x5C: out += "\\\\"
            default:
                if reordersText(scalar) { out += written(scalar) } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out
    }

    /// Whether `scalar` reorders the text around it (a bidirectional override, isolate or
    /// mark): shown as is, U+202E turns the rest of a line around.
    public static func reordersText(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x202A...0x202E, 0x2066...0x2069, 0x200E, 0x200F, 0x061C: true
        default: false
        }
    }

    /// `scalar` written as `\u{202e}`.
    public static func written(_ scalar: Unicode.Scalar) -> String { "\\u{\(String(scalar.value, radix: 16))}" }
}
