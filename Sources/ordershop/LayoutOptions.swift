import ArgumentParser
import Foundation
import OrderShop

/// `--partitions N` (or `ORDERSHOP_PARTITIONS`): how many partitions customers, products and
/// billings are spread over (``ShopLayout``). Every process of a shop must be given the same
/// count; each checks it against the shop in Redis at its start (``ShopLayout/claim(in:)``).
struct LayoutOptions: ParsableArguments {
    @Option(
        name: .customLong("partitions"), parsing: .number,
        help: "Partitions each entity type is spread over, for a Redis Cluster: every process of a shop the same (default: $ORDERSHOP_PARTITIONS, else 1)")
    var partitions: Int?

    func validate() throws {
        if let partitions, let problem = Self.problem(partitions) { throw ValidationError("--partitions " + problem) }
    }

    private static func problem(_ n: Int) -> String? {
        (1...ShopLayout.maximumPartitions).contains(n) ? nil : "must be 1 to \(ShopLayout.maximumPartitions), not \(n)"
    }

    /// The layout asked for. A bad value from the environment fails in one line naming the variable.
    func layout(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ShopLayout {
        if let partitions { return ShopLayout(partitions: partitions) }
        guard let text = environment["ORDERSHOP_PARTITIONS"], !text.isEmpty else { return .single }
        guard let n = Int(text) else { throw CleanExit.message("ORDERSHOP_PARTITIONS must be a whole number, not '\(text)'", exitCode: 1) }
        if let problem = Self.problem(n) { throw CleanExit.message("ORDERSHOP_PARTITIONS " + problem, exitCode: 1) }
        return ShopLayout(partitions: n)
    }
}
