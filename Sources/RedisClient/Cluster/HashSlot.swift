/// A Redis Cluster hash slot: CRC16 (XMODEM) of the key's hash tag, or of the whole key, mod 16384.
///
/// The hash tag is the text between the first `{` and the first `}` after it, when that text
/// is not empty: `{user:1}:cart` and `{user:1}:orders` share a slot; `{}x` and `a{b` hash whole.
public struct HashSlot: Sendable, Hashable, Comparable, CustomStringConvertible {
    public static let count = 16384
    public let rawValue: UInt16

    public init?(rawValue: Int) {
        guard (0..<Self.count).contains(rawValue) else { return nil }
        self.rawValue = UInt16(rawValue)
    }

    /// The slot of a key.
    public init(key: some Collection<UInt8>) {
        let tagged = Self.hashTag(of: key)
        rawValue = Self.crc16(tagged ?? key[...]) & UInt16(Self.count - 1)
    }

    public init(key: RedisArgument) { self.init(key: key.bytes) }
    public init(key: String) { self.init(key: key.utf8) }

    public var description: String { String(rawValue) }
    public static func < (lhs: HashSlot, rhs: HashSlot) -> Bool { lhs.rawValue < rhs.rawValue }

    /// The bytes between the first `{` and the next `}`, when there are any.
    static func hashTag<C: Collection<UInt8>>(of key: C) -> C.SubSequence? {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")) else { return nil }
        let afterOpen = key.index(after: open)
        guard let close = key[afterOpen...].firstIndex(of: UInt8(ascii: "}")), close != afterOpen else { return nil }
        return key[afterOpen..<close]
    }

    static func crc16<C: Collection<UInt8>>(_ bytes: C) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ crc16Table[Int((crc >> 8) ^ UInt16(byte))]
        }
        return crc
    }

    /// CRC16-CCITT (XMODEM, polynomial 0x1021) by byte, as in the Redis Cluster specification.
    private static let crc16Table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }

    /// The first name `<prefix><n>` (n = 0, 1, ...) whose slot is in `slots`: a key or hash tag
    /// placed in a chosen part of the slots (a partition's share, one node's slot). A range of
    /// one slot takes about 16,000 tries on average.
    public static func firstName(_ prefix: String, slottedIn slots: Range<Int>) -> String {
        var n = 0
        while true {
            let name = "\(prefix)\(n)"
            if slots.contains(Int(HashSlot(key: name).rawValue)) { return name }
            n += 1
        }
    }

    /// The one slot all `keys` hash to; nil for no keys. Throws ``RedisError/Code/crossSlot``,
    /// naming the keys and their slots (and the command, evaluated only then), when they span several.
    public static func common(_ keys: [RedisArgument], command: @autoclosure () -> String? = nil) throws(RedisError) -> HashSlot? {
        guard let first = keys.first else { return nil }
        let slot = HashSlot(key: first)
        for key in keys.dropFirst() where HashSlot(key: key) != slot {
            let listed = keys.map { "'\(String(decoding: $0.bytes, as: UTF8.self))' (slot \(HashSlot(key: $0)))" }
            let what = command().map { "\($0)'s keys" } ?? "the keys"
            throw RedisError(
                .crossSlot,
                "CROSSSLOT \(what) hash to different slots, so no one cluster node holds them all: "
                    + listed.joined(separator: ", ") + "; nothing was sent (give them a common hash tag, e.g. {order:1})")
        }
        return slot
    }
}

/// An inclusive range of slots, as CLUSTER SHARDS and CLUSTER SLOTS report them.
public struct HashSlotRange: Sendable, Hashable, CustomStringConvertible {
    public var lowerBound: Int
    public var upperBound: Int
    public init(_ lowerBound: Int, _ upperBound: Int) {
        self.lowerBound = lowerBound
        self.upperBound = upperBound
    }
    public var count: Int { upperBound - lowerBound + 1 }
    public var description: String { lowerBound == upperBound ? "\(lowerBound)" : "\(lowerBound)-\(upperBound)" }
    public func contains(_ slot: HashSlot) -> Bool { (lowerBound...upperBound).contains(Int(slot.rawValue)) }
}
