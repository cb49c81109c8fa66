package dev.ext4j.fs;

/** When a read moves a file's access time: the kernel's atime mount flags. */
public enum AtimeMode {
    /** The kernel's default: when atime is not after mtime or ctime, or is a day old. */
    RELATIME,
    /** On every read. */
    STRICTATIME,
    /** Never. */
    NOATIME
}
