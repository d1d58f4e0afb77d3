import Foundation

/// CPU time of running processes and of the whole machine, from `/proc` (Linux), so that a
/// benchmark can say what bounded it: the CPU seconds each of its processes spent over a run,
/// and how busy the machine was meanwhile (other work on a shared machine takes cores too).
public enum ProcessCPU {
    /// User + system CPU seconds a running process (all its threads) has spent so far; nil when
    /// it is gone or `/proc` cannot be read.
    public static func seconds(pid: pid_t) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return nil }
        return seconds(statLine: text, ticksPerSecond: ticksPerSecond)
    }

    /// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds.
    ///
    /// The second field is the command name in parentheses, which may itself contain spaces
    /// and parentheses (a thread can name itself `a) b (c`): the fields are counted from the
    /// last `)`, never by splitting the whole line.
    public static func seconds(statLine: String, ticksPerSecond: Double) -> Double? {
        guard let close = statLine.lastIndex(of: ")") else { return nil }
        // After the name: state (field 3), ..., utime (14), stime (15): indices 11 and 12.
        let fields = statLine[statLine.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]), ticksPerSecond > 0 else { return nil }
        return (user + system) / ticksPerSecond
    }

    /// The machine's busy CPU seconds so far, over all cores (everything but idle and iowait),
    /// from the first line of `/proc/stat`; nil when it cannot be read.
    public static func machineBusySeconds() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        return machineBusySeconds(procStat: text, ticksPerSecond: ticksPerSecond)
    }

    /// Busy seconds of a `/proc/stat` text: the `cpu` line's fields less idle (4th) and iowait
    /// (5th). Guest time is already counted in user and nice, so only the first eight count.
    public static func machineBusySeconds(procStat: String, ticksPerSecond: Double) -> Double? {
        guard let line = procStat.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cpu ") }), ticksPerSecond > 0 else { return nil }
        let ticks = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().prefix(8).compactMap { Double($0) }
        guard ticks.count >= 5 else { return nil }
        return (ticks.reduce(0, +) - ticks[3] - ticks[4]) / ticksPerSecond
    }

    /// Cores this process may run on.
    public static var cores: Int { ProcessInfo.processInfo.activeProcessorCount }

    private static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
}
