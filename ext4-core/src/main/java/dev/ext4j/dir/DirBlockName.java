package dev.ext4j.dir;

/**
 * Names a directory block in error messages. Checks on every entry take one of these instead of a
 * string, so the text is only built when a message needs it.
 */
record DirBlockName(long ino, long lblk) {
    @Override
    public String toString() {
        return "directory inode " + ino + " block " + lblk;
    }
}
