package dev.ext4j.fs;

import static dev.ext4j.fs.Permissions.O_RDONLY;
import static dev.ext4j.fs.Permissions.O_RDWR;
import static dev.ext4j.fs.Permissions.O_TRUNC;
import static dev.ext4j.fs.Permissions.O_WRONLY;
import static dev.ext4j.fs.Permissions.R_OK;
import static dev.ext4j.fs.Permissions.W_OK;
import static dev.ext4j.fs.Permissions.X_OK;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The checks an adapter makes when the kernel cannot (libfuse 2 with ACLs): generic_permission()
 * with posix_acl_permission() as a table of callers, modes, ACLs and masks, and may_open(),
 * may_delete()'s sticky rule, setattr_prepare()'s chmod, chown and times rules and
 * xattr_permission(). The expected answers are the kernel's for ext4 (fs/namei.c, fs/posix_acl.c,
 * fs/attr.c, fs/xattr.c).
 */
class AclPermissionsTest {
    private static final long INO = 21;

    @AfterEach
    void backToRoot() {
        Caller.set(0, 0);
    }

    /** An inode owned by {@code owner} ("uid:gid"). */
    private static FileAttributes inode(String owner, int mode, int flags) {
        String[] o = owner.split(":");
        return new FileAttributes(INO, mode, 1, Long.parseLong(o[0]), Long.parseLong(o[1]), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                flags, 4096, 0);
    }

    /** The caller "uid:gid" or "uid:gid:g1 g2 ...", with supplementary groups. */
    private static void as(String caller) {
        String[] c = caller.split(":");
        long[] groups = c.length < 3 ? new long[0] : Arrays.stream(c[2].trim().split(" ")).mapToLong(Long::parseLong).toArray();
        Caller.set(Long.parseLong(c[0]), Long.parseLong(c[1]), groups);
    }

    /**
     * An access ACL in the VFS xattr format from setfacl's short text, entries separated by
     * spaces: "u::rw- u:2000:--- g::r-- m::r-- o::r--"; "-" for none.
     */
    static byte[] acl(String text) {
        if (text.equals("-")) {
            return null;
        }
        String[] entries = text.trim().split(" +");
        ByteBuffer b = ByteBuffer.allocate(4 + 8 * entries.length).order(ByteOrder.LITTLE_ENDIAN).putInt(2);
        for (String e : entries) {
            String[] f = e.split(":");
            boolean named = !f[1].isEmpty();
            int tag = switch (f[0]) {
                case "u" -> named ? 0x02 : 0x01;
                case "g" -> named ? 0x08 : 0x04;
                case "m" -> 0x10;
                default -> 0x20;
            };
            b.putShort((short) tag).putShort((short) bits(f[2])).putInt(named ? Integer.parseInt(f[1]) : -1);
        }
        return b.array();
    }

    private static int bits(String rwx) {
        return (rwx.contains("r") ? R_OK : 0) | (rwx.contains("w") ? W_OK : 0) | (rwx.contains("x") ? X_OK : 0);
    }

    private static void assertErrno(Errno expected, Executable check) {
        Ext4Exception e = assertThrows(Ext4Exception.class, check);
        assertEquals(expected, e.errno(), e.getMessage());
    }

    private static void expect(String expected, Executable check) throws Throwable {
        if (expected.equals("ok")) {
            check.execute();
        } else {
            assertErrno(Errno.valueOf(expected), check);
        }
    }

    /**
     * Caller (uid:gid:groups), inode owner, mode (whose group bits are the mask, as ext4 keeps
     * them), ACL, the access asked for, and the kernel's answer.
     */
    @ParameterizedTest(name = "{0} asks {4} of {1} {2} [{3}]: {5}")
    @CsvSource(delimiter = ';', value = {
            // a named user's entry decides, even when other would allow
            "2000:2000; 0:0; 0100644; u::rw- u:2000:--- g::r-- m::r-- o::r--; r; EACCES",
            "3000:3000; 0:0; 0100644; u::rw- u:2000:--- g::r-- m::r-- o::r--; r; ok",
            // a named user's entry grants beyond other, within the mask
            "2000:2000; 0:0; 0100640; u::rw- u:2000:r-- g::--- m::r-- o::---; r; ok",
            "2000:2000; 0:0; 0100640; u::rw- u:2000:r-- g::--- m::r-- o::---; w; EACCES",
            "2000:2000; 0:0; 0100644; u::rw- u:2000:rwx g::r-- m::r-- o::r--; w; EACCES",
            "2000:2000; 0:0; 0100644; u::rw- u:2000:rwx g::r-- m::r-- o::r--; r; ok",
            "2000:2000; 0:0; 0040750; u::rwx u:2000:--x g::--- m::--x o::---; x; ok",
            "2000:2000; 0:0; 0040710; u::rwx u:2000:--x g::--- m::--x o::---; r; EACCES",
            // named groups, the caller's primary or supplementary
            "2000:2000; 0:0; 0100660; u::rw- g::r-- g:2000:rw- m::rw- o::---; w; ok",
            "2000:5000:2000; 0:0; 0100660; u::rw- g::r-- g:2000:rw- m::rw- o::---; w; ok",
            "2000:5000; 0:0; 0100660; u::rw- g::r-- g:2000:rw- m::rw- o::---; w; EACCES",
            // a group that matches without the permission keeps other out
            "2000:2000; 0:0; 0100644; u::rw- g::r-- g:2000:--- m::r-- o::r--; r; EACCES",
            // ... but another matching group that grants wins
            "2000:2000:300 400; 0:0; 0100644; u::rw- g::r-- g:300:--- g:400:r-- m::r-- o::---; r; ok",
            // the owning group through a supplementary group, limited by the mask
            "2000:5000:100; 0:100; 0100640; u::rw- u:7:rw- g::rw- m::r-- o::---; r; ok",
            "2000:5000:100; 0:100; 0100640; u::rw- u:7:rw- g::rw- m::r-- o::---; w; EACCES",
            // group bits (the mask) all clear: the ACL is not consulted, the mode's other bits decide
            "2000:2000; 0:0; 0100604; u::rw- g::r-- g:2000:--- m::--- o::r--; r; ok",
            // the owner's entry (the mode's owner bits) decides for the owner
            "2000:2000; 2000:2000; 0100060; u::--- g::rw- g:2000:rw- m::rw- o::---; r; EACCES",
            // execute through a named entry; the mask takes it away
            "2000:2000; 0:0; 0100750; u::rwx u:2000:r-x g::--- m::r-x o::---; x; ok",
            "2000:2000; 0:0; 0100765; u::rwx u:2000:rw- g::r-x m::rw- o::r-x; x; EACCES",
            // no ACL: the mode, with supplementary groups
            "2000:5000:100; 0:100; 0100640; -; r; ok",
            "2000:5000; 0:100; 0100640; -; r; EACCES",
            "2000:5000:100; 0:100; 0100604; -; r; EACCES",
            // root: read and write always, exec with an exec bit in the mode, any directory
            "0:0; 1000:100; 0100600; u::rw- u:0:--- g::--- m::--- o::---; rw; ok",
            "0:0; 1000:100; 0100654; u::rw- u:2000:r-x g::r-- m::r-x o::r--; x; ok",
            "0:0; 1000:100; 0100664; u::rw- u:2000:rw- g::r-- m::rw- o::r--; x; EACCES",
            "0:0; 1000:100; 0040000; -; rwx; ok",
    })
    void permissionTable(String caller, String owner, String mode, String aclText, String mask, String expected) throws Throwable {
        as(caller);
        FileAttributes a = inode(owner, Integer.parseInt(mode, 8), 0);
        byte[] entries = acl(aclText);
        expect(expected, () -> Permissions.checkPermission(a, () -> entries, bits(mask), false));
    }

    @Test
    void theAclIsReadOnlyWhenTheModeCannotDecide() throws Ext4Exception {
        AtomicInteger reads = new AtomicInteger();
        Permissions.AclSource counted = () -> {
            reads.incrementAndGet();
            return null;
        };
        as("1000:100");
        Permissions.checkPermission(inode("1000:100", 0100640, 0), counted, R_OK, false); // the owner
        Permissions.checkPermission(inode("0:0", 0100604, 0), counted, R_OK, false); // group bits clear
        assertEquals(0, reads.get());
        Permissions.checkPermission(inode("0:0", 0100644, 0), counted, R_OK, false);
        assertEquals(1, reads.get());
    }

    @Test
    void aWriteOfAnImmutableInodeIsEpermBeforeEacces() {
        as("2000:2000");
        assertErrno(Errno.EPERM, () -> Permissions.checkPermission(inode("0:0", 0100444, Inode.IMMUTABLE_FL), Permissions.AclSource.NONE, W_OK, false));
        assertErrno(Errno.EROFS, () -> Permissions.checkPermission(inode("0:0", 0100444, 0), Permissions.AclSource.NONE, W_OK, true));
    }

    @ParameterizedTest(name = "{0} asks {1}")
    @CsvSource({
            "O_RDONLY, r",
            "O_WRONLY, w",
            "O_RDWR, rw",
            "O_RDONLY|O_TRUNC, rw",
            "O_WRONLY|O_TRUNC, w",
            "FMODE_EXEC, x",
    })
    void openFlagsAsk(String flags, String mask) {
        int f = 0;
        for (String s : flags.split("\\|")) {
            f |= switch (s) {
                case "O_RDONLY" -> O_RDONLY;
                case "O_WRONLY" -> O_WRONLY;
                case "O_RDWR" -> O_RDWR;
                case "O_TRUNC" -> O_TRUNC;
                default -> Permissions.FMODE_EXEC;
            };
        }
        assertEquals(bits(mask), Permissions.openMask(f));
    }

    @Test
    void mayOpenChecksPermissionThenAppendOnly() throws Ext4Exception {
        as("2000:2000");
        byte[] denying = acl("u::rw- u:2000:--- g::r-- m::r-- o::r--");
        assertErrno(Errno.EACCES, () -> Permissions.checkMayOpen(inode("0:0", 0100644, 0), () -> denying, O_RDONLY, false));
        Permissions.checkMayOpen(inode("0:0", 0100666, 0), Permissions.AclSource.NONE, O_WRONLY | Permissions.O_APPEND, false);
        assertErrno(Errno.EACCES, () -> Permissions.checkMayOpen(inode("0:0", 0100644, Inode.APPEND_FL), Permissions.AclSource.NONE, O_WRONLY, false));
        assertErrno(Errno.EPERM, () -> Permissions.checkMayOpen(inode("0:0", 0100666, Inode.APPEND_FL), Permissions.AclSource.NONE, O_WRONLY, false));
    }

    /** may_delete() from a directory (owner, mode) of a victim (owner): write and search, then the sticky bit. */
    @ParameterizedTest(name = "{0} removes {3}''s entry from {1} {2}: {4}")
    @CsvSource({
            "2000:2000, 0:0,       0040777, 3000:3000, ok",
            "2000:2000, 0:0,       0041777, 3000:3000, EPERM",
            "2000:2000, 0:0,       0041777, 2000:2000, ok",
            "2000:2000, 2000:2000, 0041777, 3000:3000, ok",
            "0:0,       1:1,       0041777, 3000:3000, ok",
            "2000:2000, 0:0,       0041755, 2000:2000, EACCES",
            "2000:2000, 0:0,       0040775, 3000:3000, EACCES",
    })
    void deletes(String caller, String dirOwner, String dirMode, String victimOwner, String expected) throws Throwable {
        as(caller);
        FileAttributes dir = inode(dirOwner, Integer.parseInt(dirMode, 8), 0);
        FileAttributes victim = inode(victimOwner, 0100644, 0);
        expect(expected, () -> Permissions.checkDelete(dir, Permissions.AclSource.NONE, victim, false));
    }

    @Test
    void deletingFromAnAppendOnlyDirectoryOrAnImmutableFileIsEperm() {
        FileAttributes dir = inode("0:0", 0040777, 0);
        assertErrno(Errno.EPERM, () -> Permissions.checkDelete(inode("0:0", 0040777, Inode.APPEND_FL), Permissions.AclSource.NONE,
                inode("0:0", 0100644, 0), false));
        assertErrno(Errno.EPERM, () -> Permissions.checkDelete(dir, Permissions.AclSource.NONE, inode("0:0", 0100644, Inode.IMMUTABLE_FL), false));
    }

    @Test
    void createNeedsWriteAndSearchOnTheDirectoryAsTheAclSays() throws Ext4Exception {
        as("2000:2000");
        byte[] dropBox = acl("u::rwx u:2000:-wx g::--- m::-wx o::---");
        Permissions.checkCreate(inode("0:0", 0040730, 0), () -> dropBox, false);
        byte[] traverse = acl("u::rwx u:2000:--x g::--- m::--x o::---");
        assertErrno(Errno.EACCES, () -> Permissions.checkCreate(inode("0:0", 0040710, 0), () -> traverse, false));
    }

    /** may_linkat(): caller, mode of a file of 0:0, answer. */
    @ParameterizedTest(name = "{0} links a {1} file: {2}")
    @CsvSource({
            "2000:2000, 0100666, ok",
            "2000:2000, 0100644, EPERM",
            "2000:2000, 0104666, EPERM",
            "2000:2000, 0102676, EPERM",
            "2000:2000, 0102666, ok",
            "2000:2000, 0020666, EPERM",
            "0:0,       0104000, ok",
    })
    void hardlinks(String caller, String mode, String expected) throws Throwable {
        as(caller);
        FileAttributes a = inode("0:0", Integer.parseInt(mode, 8), 0);
        expect(expected, () -> Permissions.checkLinkSource(a, Permissions.AclSource.NONE));
        as("2000:2000");
        Permissions.checkLinkSource(inode("2000:2000", 0104000, 0), Permissions.AclSource.NONE); // the owner links anything
    }

    @Test
    void chmodIsTheOwnersAndRootsAndDropsSetgidOutsideTheGroup() throws Ext4Exception {
        FileAttributes a = inode("2000:100", 0100644, 0);
        as("3000:100");
        assertErrno(Errno.EPERM, () -> Permissions.checkChmod(a, 0100600));
        as("2000:2000");
        assertEquals(0100755, Permissions.checkChmod(a, 0102755));
        as("2000:2000:100");
        assertEquals(0102755, Permissions.checkChmod(a, 0102755));
        as("0:0");
        assertEquals(0102755, Permissions.checkChmod(a, 0102755));
    }

    @Test
    void chownGivesAwayOnlyForRootAndChgrpToTheOwnersGroups() throws Ext4Exception {
        FileAttributes a = inode("2000:100", 0100644, 0);
        as("2000:2000:300");
        Permissions.checkChown(a, 2000L, null); // the owner it has
        Permissions.checkChown(a, null, 2000L);
        Permissions.checkChown(a, null, 300L);
        Permissions.checkChown(a, null, 100L); // the group it has
        assertErrno(Errno.EPERM, () -> Permissions.checkChown(a, 3000L, null));
        assertErrno(Errno.EPERM, () -> Permissions.checkChown(a, null, 400L));
        as("3000:100");
        assertErrno(Errno.EPERM, () -> Permissions.checkChown(a, null, 100L));
        as("0:0");
        Permissions.checkChown(a, 5L, 6L);
    }

    @Test
    void timesToNowNeedWriteOthersNeedOwnership() throws Ext4Exception {
        FileAttributes writable = inode("2000:100", 0100666, 0);
        as("3000:3000");
        Permissions.checkTimes(writable, Permissions.AclSource.NONE, true, false);
        assertErrno(Errno.EPERM, () -> Permissions.checkTimes(writable, Permissions.AclSource.NONE, false, false));
        assertErrno(Errno.EACCES, () -> Permissions.checkTimes(inode("2000:100", 0100644, 0), Permissions.AclSource.NONE, true, false));
        as("2000:2000");
        Permissions.checkTimes(inode("2000:100", 0100000, 0), Permissions.AclSource.NONE, false, false);
    }

    /** xattr_permission(): caller, inode mode, name, get or set, answer. The inode is 0:0's. */
    @ParameterizedTest(name = "{0} {3} {2} on {1}: {4}")
    @CsvSource({
            "2000:2000, 0100644, user.a,                  get, ok",
            "2000:2000, 0100640, user.a,                  get, EACCES",
            "2000:2000, 0100644, user.a,                  set, EACCES",
            "2000:2000, 0100666, user.a,                  set, ok",
            "2000:2000, 0120777, user.a,                  set, EPERM",
            "2000:2000, 0120777, user.a,                  get, ENODATA",
            "2000:2000, 0041777, user.a,                  set, EPERM",
            "2000:2000, 0100666, trusted.a,               set, EPERM",
            "2000:2000, 0100666, trusted.a,               get, ENODATA",
            "0:0,       0100000, trusted.a,               set, ok",
            "2000:2000, 0100600, system.posix_acl_access, get, ok",
            "2000:2000, 0100666, system.posix_acl_access, set, EPERM",
            "2000:2000, 0100000, security.selinux,        get, ok",
            "2000:2000, 0100666, security.selinux,        set, EPERM",
            "0:0,       0100000, user.a,                  set, ok",
    })
    void xattrs(String caller, String mode, String name, String op, String expected) throws Throwable {
        as(caller);
        FileAttributes a = inode("0:0", Integer.parseInt(mode, 8), 0);
        expect(expected, () -> Permissions.checkXattr(a, Permissions.AclSource.NONE, name, op.equals("set"), false));
    }

    @Test
    void theOwnerChangesTheirAclsButNotOnAnImmutableInode() throws Ext4Exception {
        as("2000:2000");
        Permissions.checkXattr(inode("2000:2000", 0100000, 0), Permissions.AclSource.NONE, "system.posix_acl_access", true, false);
        assertErrno(Errno.EPERM, () -> Permissions.checkXattr(inode("2000:2000", 0100600, Inode.IMMUTABLE_FL), Permissions.AclSource.NONE,
                "user.a", true, false));
    }
}
