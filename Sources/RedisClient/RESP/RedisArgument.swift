/// One binary-safe argument of a command.
public struct RedisArgument: Sendable, Hashable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    public var bytes: [UInt8]

    @inlinable public init(bytes: [UInt8]) { self.bytes = bytes }
    @inlinable public init(_ string: String) { self.bytes = Array(string.utf8) }
    @inlinable public init<I: BinaryInteger>(_ value: I) { self.bytes = Array(String(value).utf8) }
    @inlinable public init(_ value: Double) { self.bytes = Array(String(value).utf8) }
    @inlinable public init(stringLiteral value: String) { self.init(value) }
    @inlinable public init(integerLiteral value: Int) { self.init(value) }
}

extension Array where Element == RedisArgument {
    /// Appends a string argument.
    @inlinable mutating func append(_ s: String) { append(RedisArgument(s)) }
}
