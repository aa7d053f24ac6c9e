import ServalBase
import Foundation
import Testing
@testable import ServalBench

@Suite struct DatasetTests {
    let tok = TestTokenizer()

    @Test func exactPromptsReEncodeToTheRequestedLength() throws {
        let builder = try PromptBuilder(tokenizer: tok)
        var rng = SeededGenerator(seed: 3)
        for len in [1, 2, 17, 200] {
            let p = try builder.exactPrompt(length: len, rng: &rng)
            #expect(p.ids.count == len)
            #expect(try tok.encode(p.text) == p.ids)
            #expect(!p.ids.contains { tok.isSpecial($0) })
        }
    }

    @Test func randomDatasetRespectsLengthsAndRangeRatio() throws {
        let fixed = try DatasetBuilder.build(
            .random(inputLen: 40, outputLen: 9, rangeRatio: 1), numPrompts: 12, tokenizer: tok, seed: 1)
        #expect(fixed.count == 12)
        for r in fixed {
            #expect(r.promptLen == 40 && r.outputLen == 9)
            #expect(try tok.encode(r.text) == r.ids)
        }
        let ranged = try DatasetBuilder.build(
            .random(inputLen: 40, outputLen: 10, rangeRatio: 0.5), numPrompts: 50, tokenizer: tok, seed: 1)
        #expect(ranged.allSatisfy { (20...40).contains($0.promptLen) && (5...10).contains($0.outputLen) })
        #expect(Set(ranged.map(\.promptLen)).count > 1)
        // Same seed, same prompts.
        let again = try DatasetBuilder.build(
            .random(inputLen: 40, outputLen: 9, rangeRatio: 1), numPrompts: 12, tokenizer: tok, seed: 1)
        #expect(again == fixed)
    }

    @Test func sharedPrefixGroupsShareTheirSystemPrompt() throws {
        let rows = try DatasetBuilder.build(
            .generatedSharedPrefix(numGroups: 3, promptsPerGroup: 4, systemPromptLen: 30, questionLen: 6, outputLen: 5),
            numPrompts: 999, tokenizer: tok, seed: 9)
        #expect(rows.count == 12)
        #expect(rows.allSatisfy { $0.promptLen == 36 && $0.outputLen == 5 })
        for r in rows { #expect(try tok.encode(r.text) == r.ids) }
        let prefixes = Dictionary(grouping: rows, by: { Array($0.ids.prefix(30)) })
        #expect(prefixes.count == 3)
        #expect(prefixes.values.allSatisfy { $0.count == 4 })
    }

    @Test func shareGPTFileGivesPromptsAndReplyLengths() throws {
        let url = try #require(
            Bundle.module.url(forResource: "sharegpt-small", withExtension: "json", subdirectory: "Fixtures"))
        let rows = try DatasetBuilder.build(
            .shareGPT(path: url.path, fixedOutputLen: nil, contextLen: nil),
            numPrompts: 10, tokenizer: tok, seed: 1)
        // The fixture has 4 entries: one too short, one without a reply; two usable.
        #expect(rows.count == 2)
        let byPrompt = Dictionary(uniqueKeysWithValues: rows.map { ($0.text, $0.outputLen) })
        let parisLen = try tok.encode("parisisthecapital").count
        let jokeLen = try tok.encode("whydidthechickencrosstheroad").count
        #expect(byPrompt["whatisthecapitaloffrance"] == parisLen)
        #expect(byPrompt["tellmeajoke"] == jokeLen)
        let fixedLen = try DatasetBuilder.build(
            .shareGPT(path: url.path, fixedOutputLen: 7, contextLen: nil),
            numPrompts: 1, tokenizer: tok, seed: 1)
        #expect(fixedLen.count == 1 && fixedLen[0].outputLen == 7)
    }

    @Test func malformedDatasetFilesGiveClearErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "serval-bench-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = dir.appendingPathComponent("bad.json")
        try Data("{not json".utf8).write(to: bad)
        #expect {
            try DatasetBuilder.build(
                .shareGPT(path: bad.path, fixedOutputLen: nil, contextLen: nil), numPrompts: 1, tokenizer: tok, seed: 1)
        } throws: { "\($0)".contains("not valid JSON") }
        let wrongShape = dir.appendingPathComponent("obj.json")
        try Data(#"{"conversations": []}"#.utf8).write(to: wrongShape)
        #expect {
            try DatasetBuilder.build(
                .shareGPT(path: wrongShape.path, fixedOutputLen: nil, contextLen: nil), numPrompts: 1, tokenizer: tok,
                seed: 1)
        } throws: { "\($0)".contains("JSON array") }
        #expect {
            try DatasetBuilder.build(
                .shareGPT(path: dir.appendingPathComponent("missing.json").path, fixedOutputLen: nil, contextLen: nil),
                numPrompts: 1, tokenizer: tok, seed: 1)
        } throws: { "\($0)".contains("cannot read") }
    }
}
