import Foundation

/// Writes to stdout/stderr without buffering surprises across tasks.
enum FileHandleOutput {
    static func stderr(_ s: String) {
        FileHandle.standardError.write(Data(s.utf8))
    }
}
