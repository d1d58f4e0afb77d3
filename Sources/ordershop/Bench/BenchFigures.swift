import Foundation

/// One benchmark figure: our value beside the peer's, measured in the same run.
///
/// `ratio` is always `ours / peer`: above 1 is better for rates (events/s, requests/s), below 1
/// is better for times (ms). The unit says which.
struct BenchFigure: Sendable {
    var name: String
    var unit: String
    var ours: Double
    var peer: Double?

    var ratio: Double? { peer.flatMap { $0 == 0 ? nil : ours / $0 } }
    var lowerIsBetter: Bool { unit == "ms" || unit == "µs/op" || unit == "µs/req" }
}

/// The figures of several runs of the same benchmark, reported as medians (with min and max
/// when there was more than one run).
struct BenchResults: Sendable {
    private(set) var order: [String] = []
    private(set) var samples: [String: (unit: String, ours: [Double], peer: [Double])] = [:]
    private(set) var notes: [String] = []

    mutating func add(_ figure: BenchFigure) {
        if samples[figure.name] == nil {
            order.append(figure.name)
            samples[figure.name] = (figure.unit, [], [])
        }
        samples[figure.name]!.ours.append(figure.ours)
        if let peer = figure.peer { samples[figure.name]!.peer.append(peer) }
    }

    /// The geometric mean of the runs' own ratios (each run's ours over the peer measured just
    /// before or after it), with the smallest and largest of them; nil unless every run of the
    /// figure had a peer figure (then `ours` and `peer` pair up by index: ``add(_:)`` appends
    /// both) and there were at least two.
    ///
    /// Why beside the ratio of the medians: this VM's speed drifts by 10-25 % within minutes
    /// (the same tracing-off drain ran at 84k-131k events/s within one command, 2026-12-04),
    /// and a ratio of two medians taken from different runs carries that drift; a run's own
    /// ratio compares two measurements seconds apart. Six `bench worker --tracing compare
    /// --runs 11` commands in a row gave ratios of medians 0.882-0.990 and paired ratios
    /// 0.900-0.980.
    func pairedRatio(_ name: String) -> (mean: Double, min: Double, max: Double)? {
        guard let s = samples[name], s.ours.count == s.peer.count, s.ours.count > 1 else { return nil }
        let ratios = zip(s.ours, s.peer).map { $0 / $1 }
        guard ratios.allSatisfy({ $0 > 0 && $0.isFinite }) else { return nil }
        let mean = exp(ratios.map { log($0) }.reduce(0, +) / Double(ratios.count))
        return (mean, ratios.min()!, ratios.max()!)
    }

    mutating func add(_ figures: [BenchFigure]) { figures.forEach { add($0) } }
    mutating func note(_ text: String) { notes.append(text) }

    /// Medians of every figure, in the order first seen.
    var figures: [BenchFigure] {
        order.map { name in
            let s = samples[name]!
            return BenchFigure(name: name, unit: s.unit, ours: median(s.ours), peer: s.peer.isEmpty ? nil : median(s.peer))
        }
    }

    /// Prints a table, or one JSON object per figure and line.
    func print(json: Bool, title: String) {
        let runs = samples.values.map(\.ours.count).max() ?? 0
        if json {
            for name in order {
                let s = samples[name]!
                let f = BenchFigure(name: name, unit: s.unit, ours: median(s.ours), peer: s.peer.isEmpty ? nil : median(s.peer))
                var line = "{\"name\": \"\(name)\", \"unit\": \"\(s.unit)\", \"ours\": \(number(f.ours)), \"peer\": \(f.peer.map(number) ?? "null"), \"ratio\": \(f.ratio.map { String(format: "%.3f", $0) } ?? "null")"
                if s.ours.count > 1 {
                    line += ", \"runs\": \(s.ours.count), \"ours_min\": \(number(s.ours.min()!)), \"ours_max\": \(number(s.ours.max()!))"
                    if !s.peer.isEmpty {
                        line += ", \"peer_min\": \(number(s.peer.min()!)), \"peer_max\": \(number(s.peer.max()!))"
                    }
                    if let paired = pairedRatio(name) {
                        line += String(
                            format: ", \"paired_ratio\": %.3f, \"paired_ratio_min\": %.3f, \"paired_ratio_max\": %.3f", paired.mean, paired.min, paired.max)
                    }
                }
                Swift.print(line + "}")
            }
            return
        }
        Swift.print(title + (runs > 1 ? " (median of \(runs) runs; [min..max])" : ""))
        Swift.print(
            pad("figure", 34) + pad("unit", 10) + pad("ours", 26, right: true) + pad("peer", 26, right: true) + pad("ratio", 9, right: true)
                + pad("paired", 9, right: true))
        for name in order {
            let s = samples[name]!
            let f = BenchFigure(name: name, unit: s.unit, ours: median(s.ours), peer: s.peer.isEmpty ? nil : median(s.peer))
            Swift.print(
                pad(name, 34) + pad(s.unit, 10) + pad(cell(s.ours), 26, right: true) + pad(s.peer.isEmpty ? "-" : cell(s.peer), 26, right: true)
                    + pad(f.ratio.map { String(format: "%.2f", $0) } ?? "-", 9, right: true)
                    + pad(pairedRatio(name).map { String(format: "%.2f", $0.mean) } ?? "-", 9, right: true))
        }
        if order.contains(where: { pairedRatio($0) != nil }) {
            Swift.print("  paired: the geometric mean of each run's own ratio (ours and peer measured in the same run)")
        }
        for note in notes { Swift.print("  note: " + note) }
    }

    private func cell(_ values: [Double]) -> String {
        values.count > 1 ? "\(short(median(values))) [\(short(values.min()!))..\(short(values.max()!))]" : short(values[0])
    }

    private func short(_ v: Double) -> String { v >= 100 ? String(format: "%.0f", v) : String(format: "%.3f", v) }
    private func number(_ v: Double) -> String { v >= 100 ? String(format: "%.0f", v) : String(format: "%.3f", v) }
    private func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(1, width - text.count))
        return right ? fill + text : text + fill
    }
}

/// Median (mean of the middle two for an even count).
func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return .nan }
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Nearest-rank percentile (q in 0...100) of sorted values: the same definition as the peers'.
func percentile(_ sorted: [Double], _ q: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let rank = Int((q / 100 * Double(sorted.count)).rounded(.up))
    return sorted[max(0, min(sorted.count, rank) - 1)]
}

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes on Linux (Python's
/// `time.perf_counter` reads the same clock), so timestamps can travel in stream fields.
func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// A failure of a benchmark run (setup, a child that died, a peer that printed nothing).
struct BenchRunError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
