/// A failure of the harness itself (not a finding about the system under test).
public struct ChaosError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
