package dev.ext4j.testutil;

import static org.junit.jupiter.api.Assertions.fail;

import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.Ext4FileSystem;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;

/** Names, contents and whole-file reads for tests that drive an {@link Ext4FileSystem} directly. */
public final class FsData {
    private FsData() {
    }

    /** A file name as the core takes it. */
    public static byte[] name(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /** {@code len} bytes that differ with {@code seed} and along the buffer. */
    public static byte[] pattern(int len, int seed) {
        byte[] b = new byte[len];
        for (int i = 0; i < len; i++) {
            b[i] = (byte) (i * 31 + seed);
        }
        return b;
    }

    /** A new regular file of mode 0644 owned by root in the root directory. */
    public static long create(Ext4FileSystem fs, String name) throws Ext4Exception {
        return fs.mknod(Ext4FileSystem.ROOT_INO, name(name), 0100644, 0, 0, 0, 0);
    }

    /** The whole file, read through the core. */
    public static byte[] readAll(Ext4FileSystem fs, long ino) throws Ext4Exception {
        byte[] all = new byte[(int) fs.stat(ino).size()];
        ByteBuffer b = ByteBuffer.wrap(all);
        while (b.hasRemaining()) {
            if (fs.read(ino, b.position(), b) <= 0) {
                fail("short read of inode " + ino);
            }
        }
        return all;
    }
}
