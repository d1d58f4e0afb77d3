import ArgumentParser

/// `ordershop bench ...`: benchmarks that compare our parts with a reference on this machine.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: each figure side by side with a reference, measured in the same run.",
        subcommands: [
            BenchClientCommand.self, BenchWorkerCommand.self, BenchScalingCommand.self, BenchLatencyCommand.self,
            BenchRecoveryCommand.self, BenchGatewayCommand.self, BenchAllCommand.self,
        ]
    )
}
