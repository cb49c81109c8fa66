package dev.ext4j.fs;

import static dev.ext4j.testutil.FsData.name;
import static dev.ext4j.testutil.FsData.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.format.Inode;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * O_TMPFILE ({@link Ext4FileSystem#tmpfile}): an open regular file with no name, on the orphan list
 * from the start, which link(2) may name once, and which its release, an unmount or the next mount
 * after a crash frees otherwise; and {@link Ext4FileSystem#createMode}, posix_acl_create()'s mode.
 * Unjournaled, as {@link OrphanTest}, to read the orphan list at home while mounted.
 */
class TmpfileTest {
    private static final long ROOT = Ext4FileSystem.ROOT_INO;
    private static final MountOptions OPTIONS = MountOptions.defaults().withJournal(false);

    @TempDir
    Path work;

    private Path mkfs(String name) {
        return Images.mkfs(work.resolve(name), "64M", List.of("-b", "4096"), null);
    }

    private static long firstOrphan(Path img) {
        String v = Images.dumpe2fsHeader(img).get("First orphan inode");
        return v == null ? 0 : Long.parseLong(v.trim());
    }

    @Test
    void aLinkedTmpfileKeepsItsNameAndData() throws Exception {
        Path img = mkfs("linked.img");
        byte[] data = pattern(300_000, 3);
        long ino;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS)) {
            long dir = fs.mkdir(ROOT, name("d"), 0755, 0, 0);
            FileAttributes dirBefore = fs.stat(dir);
            ino = fs.tmpfile(dir, 0640, 1000, 1001);
            FileAttributes a = fs.stat(ino);
            assertEquals(0100640, a.mode());
            assertEquals(0, a.nlink());
            assertEquals(1000, a.uid());
            assertEquals(1001, a.gid());
            assertTrue(fs.isReferenced(ino), "it comes open once");
            assertEquals(dirBefore, fs.stat(dir), "the directory does not change");
            assertEquals(data.length, fs.write(ino, 0, ByteBuffer.wrap(data)));
            fs.sync();
            assertEquals(ino, firstOrphan(img), "an orphan from the start");

            fs.link(ino, dir, name("named"));
            assertEquals(ino, fs.lookup(dir, name("named")));
            assertEquals(1, fs.stat(ino).nlink());
            fs.sync();
            assertEquals(0, firstOrphan(img), "its first name takes it off the orphan list");
            fs.release(ino);
            fs.link(ino, ROOT, name("second"));
            assertEquals(2, fs.stat(ino).nlink());
        }
        Images.assertClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS.withReadOnly(true))) {
            long named = fs.lookup(fs.lookup(ROOT, name("d")), name("named"));
            assertEquals(ino, named);
            byte[] back = new byte[data.length];
            assertEquals(data.length, fs.read(named, 0, ByteBuffer.wrap(back)));
            assertArrayEquals(data, back);
        }
    }

    @Test
    void anUnnamedTmpfileIsFreedAtItsRelease() throws Exception {
        Path img = mkfs("released.img");
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS)) {
            StatFs before = fs.statfs(false);
            long ino = fs.tmpfile(ROOT, 0600, 0, 0);
            fs.write(ino, 0, ByteBuffer.wrap(pattern(1 << 20, 1)));
            fs.sync();
            assertTrue(fs.statfs(false).freeBlocks() <= before.freeBlocks() - 256);
            assertEquals(before.freeInodes() - 1, fs.statfs(false).freeInodes());
            fs.release(ino);
            assertFalse(fs.isReferenced(ino));
            assertEquals(before.freeBlocks(), fs.statfs(false).freeBlocks(), "its blocks are free");
            assertEquals(before.freeInodes(), fs.statfs(false).freeInodes(), "and its inode");
            fs.sync();
            assertEquals(0, firstOrphan(img));
            Expect.errno(Errno.ENOENT, () -> fs.link(ino, ROOT, name("late")));

            // the number comes back for a new file, which no O_TMPFILE made
            long reused = fs.mknod(ROOT, name("new"), 0100644, 0, 0, 0, 0);
            assertEquals(ino, reused);
            fs.open(reused);
            fs.unlink(ROOT, name("new"));
            Expect.errno(Errno.ENOENT, () -> fs.link(reused, ROOT, name("new2")));
            fs.release(reused);
        }
        Images.assertClean(img);
    }

    /** As the kernel's vfs_link(): only an O_TMPFILE inode that was never linked may get a name with no link left. */
    @Test
    void anUnlinkedOpenFileCannotBeLinkedAgain() throws Exception {
        Path img = mkfs("relink.img");
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS)) {
            long plain = fs.mknod(ROOT, name("plain"), 0100644, 0, 0, 0, 0);
            fs.open(plain);
            fs.unlink(ROOT, name("plain"));
            Expect.errno(Errno.ENOENT, () -> fs.link(plain, ROOT, name("again")));

            long tmp = fs.tmpfile(ROOT, 0644, 0, 0);
            fs.link(tmp, ROOT, name("t"));
            fs.unlink(ROOT, name("t"));
            Expect.errno(Errno.ENOENT, () -> fs.link(tmp, ROOT, name("t2")));
            assertEquals(0, fs.stat(tmp).nlink());
            fs.release(plain);
            fs.release(tmp);
        }
        Images.assertClean(img);
    }

    @Test
    void aTmpfileOpenAtUnmountIsFreed() throws Exception {
        Path img = mkfs("unmount.img");
        long free0;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS)) {
            free0 = fs.statfs(false).freeBlocks();
            long ino = fs.tmpfile(ROOT, 0600, 0, 0);
            fs.write(ino, 0, ByteBuffer.wrap(pattern(200_000, 2)));
        }
        Images.assertClean(img);
        assertEquals(0, firstOrphan(img));
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS.withReadOnly(true))) {
            assertEquals(free0, fs.statfs(false).freeBlocks());
        }
    }

    /** A crash (the image copied while mounted, as {@link OrphanTest} does) leaves the tmpfile on the list; the next mount frees it. */
    @Test
    void aTmpfileOpenAtACrashIsFreedByTheNextMount() throws Exception {
        Path img = mkfs("crash.img");
        Path crashed = work.resolve("crashed.img");
        long free0;
        long ino;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS)) {
            free0 = fs.statfs(false).freeBlocks();
            ino = fs.tmpfile(ROOT, 0600, 0, 0);
            fs.write(ino, 0, ByteBuffer.wrap(pattern(400_000, 4)));
            fs.sync();
            Files.copy(img, crashed);
        }
        assertEquals(ino, firstOrphan(crashed));
        assertFalse(Images.fsckCheck(crashed).exitCode() == 0, "before the next mount, e2fsck sees the orphan's blocks in use");
        try (Ext4FileSystem fs = Ext4FileSystem.open(crashed, OPTIONS)) {
            assertEquals(free0, fs.statfs(false).freeBlocks(), "the orphan cleanup freed it");
        }
        assertEquals(0, firstOrphan(crashed));
        Images.assertClean(crashed);
        Images.assertClean(img);
    }

    /** The same crash on a journaled mount: the orphan link commits with the inode; replay, then cleanup, free it. */
    @Test
    void aTmpfileOpenAtACrashOfAJournaledMountIsFreedByTheNextMount() throws Exception {
        Path img = mkfs("jcrash.img");
        Path crashed = work.resolve("jcrashed.img");
        MountOptions journaled = MountOptions.defaults();
        long free0;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, journaled)) {
            free0 = fs.statfs(false).freeBlocks();
            long ino = fs.tmpfile(ROOT, 0600, 0, 0);
            fs.write(ino, 0, ByteBuffer.wrap(pattern(400_000, 5)));
            fs.fsync(ino, false);
            Files.copy(img, crashed);
        }
        assertTrue(Images.dumpe2fsHeader(crashed).get("Filesystem features").contains("needs_recovery"), "a crashed journaled mount");
        try (Ext4FileSystem fs = Ext4FileSystem.open(crashed, journaled)) {
            assertEquals(free0, fs.statfs(false).freeBlocks(), "replay, then the orphan cleanup freed it");
        }
        assertEquals(0, firstOrphan(crashed));
        Images.assertClean(crashed);
        Images.assertClean(img);
    }

    @Test
    void aTmpfileIsMadeAsMknodMakesOneAndRefusedAsTheKernelRefuses() throws Exception {
        Path img = mkfs("rules.img");
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS)) {
            long sgid = fs.mkdir(ROOT, name("sgid"), 02775, 0, 0);
            fs.setAttributes(sgid, 02775, null, 4242L, null, null);
            long ino = fs.tmpfile(sgid, 0100664, 1000, 1000);
            assertEquals(4242, fs.stat(ino).gid(), "a setgid directory passes on its group");
            assertEquals(0100664, fs.stat(ino).mode());
            fs.release(ino);

            long file = fs.mknod(ROOT, name("file"), 0100644, 0, 0, 0, 0);
            Expect.errno(Errno.ENOTDIR, () -> fs.tmpfile(file, 0600, 0, 0));
            Expect.errno(Errno.EINVAL, () -> fs.tmpfile(ROOT, Inode.S_IFDIR | 0700, 0, 0));
            long gone = fs.mkdir(ROOT, name("gone"), 0755, 0, 0);
            fs.rmdir(ROOT, name("gone"));
            Expect.errno(Errno.ENOENT, () -> fs.tmpfile(gone, 0600, 0, 0));
            long imm = fs.mkdir(ROOT, name("imm"), 0755, 0, 0);
            fs.setFlags(imm, fs.getFlags(imm) | Inode.IMMUTABLE_FL);
            Expect.errno(Errno.EPERM, () -> fs.tmpfile(imm, 0600, 0, 0));
            fs.setFlags(imm, fs.getFlags(imm) & ~Inode.IMMUTABLE_FL);
        }
        Images.assertClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS.withReadOnly(true))) {
            Expect.errno(Errno.EROFS, () -> fs.tmpfile(ROOT, 0600, 0, 0));
        }
    }

    /**
     * posix_acl_create(): without a default ACL the umask applies; with one the mode comes back
     * unmasked, and a tmpfile made with it takes the inherited ACL (its group bits become the mask).
     */
    @Test
    void createModeAppliesTheUmaskOnlyWithoutADefaultAcl() throws Exception {
        Path img = mkfs("acl.img");
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, OPTIONS)) {
            long plain = fs.mkdir(ROOT, name("plain"), 0755, 0, 0);
            long acl = fs.mkdir(ROOT, name("acl"), 0755, 0, 0);
            fs.setXattr(acl, "system.posix_acl_default", ReadPathTest.aclValue(3000, 0), 0);

            assertEquals(0100644, fs.createMode(plain, 0100666, 022));
            assertEquals(040700, fs.createMode(plain, 040777, 077));
            assertEquals(0100666, fs.createMode(acl, 0100666, 022));
            assertEquals(040777, fs.createMode(acl, 040777, 077));
            assertEquals(0120777, fs.createMode(plain, 0120777, 022), "a symlink's mode is not masked");
            long file = fs.mknod(ROOT, name("file"), 0100644, 0, 0, 0, 0);
            Expect.errno(Errno.ENOTDIR, () -> fs.createMode(file, 0100666, 022));

            long t = fs.tmpfile(acl, fs.createMode(acl, 0100666, 022), 0, 0);
            assertNotNull(fs.findXattr(t, "system.posix_acl_access"), "the default ACL was inherited");
            // user::rw- named:rw- group::r-- mask::rw- other::r-- masked by 0666: the mask shows as the group bits
            assertEquals(0100664, fs.stat(t).mode());
            fs.link(t, acl, name("t"));
            fs.release(t);
            long u = fs.tmpfile(plain, fs.createMode(plain, 0100666, 022), 0, 0);
            assertNull(fs.findXattr(u, "system.posix_acl_access"));
            assertEquals(0100644, fs.stat(u).mode());
            fs.release(u);
        }
        Images.assertClean(img);
    }
}
