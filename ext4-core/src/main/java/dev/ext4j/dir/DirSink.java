package dev.ext4j.dir;

/** Receives directory entries in readdir order. */
@FunctionalInterface
public interface DirSink {

    /**
     * @param nextPosition the position to resume from after this entry
     * @return false to stop (the caller's buffer is full); the entry was then not taken
     */
    boolean accept(byte[] name, long ino, int fileType, long nextPosition);
}
