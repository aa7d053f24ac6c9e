/// Incremental Server-Sent-Events parser: feed it body bytes as they arrive
/// (chunk boundaries fall anywhere, even inside a line or a UTF-8 sequence)
/// and it hands back complete events' `data` payloads.
///
/// Only the parts servers use for token streams are kept: `data:` lines
/// (several are joined with "\n"), blank-line dispatch, `:` comments skipped.
/// Some servers (SGLang's /generate among them) end each event with a single
/// blank line; both "\n" and "\r\n" line ends work.
public struct SSEParser: Sendable {
    private var pending: [UInt8] = []
    private var dataLines: [String] = []

    public init() {}

    /// Consumes bytes; returns the data payloads of events completed by them.
    public mutating func feed<S: Sequence>(_ bytes: S) -> [String] where S.Element == UInt8 {
        var events: [String] = []
        for b in bytes {
            if b == UInt8(ascii: "\n") {
                var line = pending
                pending.removeAll(keepingCapacity: true)
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                handle(line: line, into: &events)
            } else {
                pending.append(b)
            }
        }
        return events
    }

    /// Flushes what is left when the stream ends (a last event with no blank line).
    public mutating func finish() -> [String] {
        var events: [String] = []
        if !pending.isEmpty {
            let line = pending
            pending.removeAll()
            handle(line: line, into: &events)
        }
        if !dataLines.isEmpty {
            events.append(dataLines.joined(separator: "\n"))
            dataLines.removeAll()
        }
        return events
    }

    private mutating func handle(line: [UInt8], into events: inout [String]) {
        if line.isEmpty {
            if !dataLines.isEmpty {
                events.append(dataLines.joined(separator: "\n"))
                dataLines.removeAll()
            }
            return
        }
        if line.first == UInt8(ascii: ":") { return }
        let text = String(decoding: line, as: UTF8.self)
        let field: Substring
        var value: Substring
        if let colon = text.firstIndex(of: ":") {
            field = text[..<colon]
            value = text[text.index(after: colon)...]
            if value.first == " " { value = value.dropFirst() }
        } else {
            field = Substring(text)
            value = ""
        }
        guard field == "data" else { return }
        dataLines.append(String(value))
    }
}
