import ArgumentParser

/// `ordershop bench all`: every suite in turn with the same options (`make bench` runs it).
struct BenchAllCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "all",
        abstract: "Run every benchmark: client, worker, scaling, latency, recovery, gateway."
    )

    @OptionGroup var options: BenchOptions
    @Option(help: "Suites to skip (client, worker, scaling, latency, recovery, gateway).") var skip: [String] = []

    func run() async throws {
        let forwarded = options.forwarded
        var failures: [String] = []
        // Each suite on its own: one that fails (a missing wrk, say) does not hide the others.
        func suite(_ name: String, _ body: () async throws -> Void) async {
            guard !skip.contains(name) else { return }
            do { try await body() } catch {
                benchLog("\(name) failed: \(error)")
                failures.append(name)
            }
        }
        await suite("client") {
            // The client bench has its own options: it always compares with redis-benchmark.
            let c = try BenchClientCommand.parse((options.json ? ["--json"] : []) + ["--runs", "\(options.runs)"])
            try await c.run()
        }
        await suite("worker") { let c = try BenchWorkerCommand.parse(forwarded); try await c.run() }
        await suite("scaling") { let c = try BenchScalingCommand.parse(forwarded); try await c.run() }
        await suite("latency") { let c = try BenchLatencyCommand.parse(forwarded); try await c.run() }
        await suite("recovery") { let c = try BenchRecoveryCommand.parse(forwarded); try await c.run() }
        await suite("gateway") { let c = try BenchGatewayCommand.parse(forwarded); try await c.run() }
        if !failures.isEmpty { throw BenchRunError("failed suites: \(failures.joined(separator: ", "))") }
    }
}
