#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What a path names on disk, via stat(2) (FoundationEssentials has no directory probe).
enum PathKind {
    case missing, directory, file

    init(_ path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { self = .missing; return }
        self = (st.st_mode & S_IFMT) == S_IFDIR ? .directory : .file
    }
}
