import ArgumentParser
import Logging
import OrderShop

/// Ends a long-running command that failed: one error line saying what failed and why (for a
/// port that cannot be bound: the address, the port, the reason and the flag that changes it),
/// then a non-zero exit, without ArgumentParser's usage text.
func exitFailing(_ error: any Error, logger: Logger, portFlag: (Listener) -> String) -> ExitCode {
    switch error {
    case let failure as ListenFailure:
        logger.error("\(failure.line(flag: portFlag(failure.listener)))")
    case let error as ExitCode:
        return error
    default:
        logger.error("\(error)")
    }
    return .failure
}
