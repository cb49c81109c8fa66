package dev.ext4j.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link Ext4FileSystem#dropSetid}, file_remove_privs() where the kernel leaves it to ext4j
 * (FUSE_HANDLE_KILLPRIV_V2): setuid always goes, setgid only with group execute, ctime moves only
 * when a bit went, and an append-only file that has the bits refuses (EPERM) as notify_change()
 * does. The same rule clears the bits on a chown.
 */
class DropSetidTest {
    private static final long ROOT = Ext4FileSystem.ROOT_INO;
    private static final Ext4FileSystem.Time OLD = new Ext4FileSystem.Time(1_000_000, 0);

    @TempDir
    Path work;

    private static long file(Ext4FileSystem fs, String name, int mode) throws Ext4Exception {
        long ino = fs.mknod(ROOT, name.getBytes(StandardCharsets.UTF_8), 0100000 | mode, 0, 0, 1000, 1000);
        fs.setAttributes(ino, null, null, null, OLD, OLD); // ctime moves to now with it
        return ino;
    }

    private static int perm(Ext4FileSystem fs, long ino) throws Ext4Exception {
        return fs.stat(ino).mode() & 07777;
    }

    @Test
    void clearsWhatShouldRemoveSuidSaysAndNothingElse() throws Exception {
        Path img = Images.mkfs(work.resolve("setid.img"), "16M", List.of(), null);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            long both = file(fs, "both", 06755);
            long sgidNoExec = file(fs, "sgid-no-exec", 02745);
            long suidOnly = file(fs, "suid", 04700);
            long plain = file(fs, "plain", 0755);
            long before = RenameFlagsTest.ctimeNanos(fs, plain);

            for (long ino : new long[] {both, sgidNoExec, suidOnly, plain}) {
                fs.dropSetid(ino);
            }
            assertEquals(0755, perm(fs, both));
            assertEquals(02745, perm(fs, sgidNoExec), "setgid without group execute marks mandatory locking and stays");
            assertEquals(0700, perm(fs, suidOnly));
            assertEquals(0755, perm(fs, plain));
            assertEquals(before, RenameFlagsTest.ctimeNanos(fs, plain), "nothing to clear: the inode is not written");

            long chowned = file(fs, "chowned", 06755);
            fs.setAttributes(chowned, null, 7L, 7L, null, null);
            assertEquals(0755, perm(fs, chowned), "a chown clears by the same rule");
        }
        Images.assertClean(img);
    }

    @Test
    void anAppendOnlyFileWithTheBitsRefuses() throws Exception {
        Path img = Images.mkfs(work.resolve("append.img"), "16M", List.of(), null);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            long setid = file(fs, "setid", 04755);
            long plain = file(fs, "plain", 0755);
            fs.setFlags(setid, fs.getFlags(setid) | Inode.APPEND_FL);
            fs.setFlags(plain, fs.getFlags(plain) | Inode.APPEND_FL);
            Expect.errno(Errno.EPERM, () -> fs.dropSetid(setid));
            assertEquals(04755, perm(fs, setid));
            fs.dropSetid(plain); // nothing to clear: no change is asked of the append-only inode
            assertEquals(0755, perm(fs, plain));
            fs.setFlags(setid, fs.getFlags(setid) & ~Inode.APPEND_FL);
            fs.setFlags(plain, fs.getFlags(plain) & ~Inode.APPEND_FL);
        }
        Images.assertClean(img);
    }
}
