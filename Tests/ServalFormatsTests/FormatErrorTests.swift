import Testing
@testable import ServalFormats

/// FormatError's description is the one line the CLI prints, whatever bytes a corrupt file
/// put into the tensor or key name it reports.
struct FormatErrorTests {
    @Test func plainDescription() {
        #expect(
            FormatError(file: "/m.gguf", item: "blk.0.attn_q.weight", "tensor is missing").description
                == "/m.gguf: blk.0.attn_q.weight: tensor is missing")
        #expect(FormatError(file: "/m.gguf", "file is empty").description == "/m.gguf: file is empty")
    }

    @Test func controlCharactersAreEscaped() {
        let e = FormatError(file: "/m.gguf", item: "evil\nname\u{1B}[31m\u{0}", "bad\ttype")
        #expect(e.description == "/m.gguf: evil\\u{a}name\\u{1b}[31m\\u{0}: bad\\u{9}type")
        #expect(e.item == "evil\nname\u{1B}[31m\u{0}")  // the raw name stays available
    }

    @Test func longNamesAreCut() {
        let e = FormatError(file: "f", item: String(repeating: "x", count: 10_000), "m")
        #expect(e.description.count < 220)
        #expect(e.description.hasSuffix("…: m"))
    }
}
