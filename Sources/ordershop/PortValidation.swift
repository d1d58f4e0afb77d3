import ArgumentParser

/// Port options are checked before anything starts: a value past 65535 was truncated to 16 bits
/// by the socket layer (`--port 70000` listened on 4464 and said so nowhere), and a negative one
/// failed deep inside the server's start.
enum PortValidation {
    /// Throws naming the option unless `value` is 0 (where the option allows "any free port" or
    /// "none") or 1-65535.
    static func check(_ value: Int?, _ option: String, allowsZero: Bool = true) throws {
        guard let value else { return }
        if value == 0 && allowsZero { return }
        guard (1...65535).contains(value) else {
            throw ValidationError("\(option) \(value) is not a port: 1-65535\(allowsZero ? ", or 0" : "")")
        }
    }
}
