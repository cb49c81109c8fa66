package dev.ext4j.dir;

import dev.ext4j.Ext4Exception;

/** A directory's entries, wherever they live: blocks (linear or htree) or inline data. */
public interface DirEntries {

    /** Inode number of {@code name}, or 0 when there is no such entry. */
    long lookup(byte[] name) throws Ext4Exception;

    /**
     * Feeds entries from {@code position} on ("." and ".." included) until the sink says stop.
     * Position 0 is the start; positions handed to the sink stay valid across calls.
     */
    void readdir(long position, DirSink sink) throws Ext4Exception;
}
