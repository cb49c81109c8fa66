package dev.ext4j.fs;

import static dev.ext4j.fs.Permissions.O_APPEND;
import static dev.ext4j.fs.Permissions.O_RDONLY;
import static dev.ext4j.fs.Permissions.O_RDWR;
import static dev.ext4j.fs.Permissions.O_TRUNC;
import static dev.ext4j.fs.Permissions.O_WRONLY;
import static dev.ext4j.fs.Permissions.R_OK;
import static dev.ext4j.fs.Permissions.W_OK;
import static dev.ext4j.fs.Permissions.X_OK;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The kernel's open, access and capability decisions as {@link Permissions} makes them: a matrix
 * of open flags against the immutable and append-only flags, of access masks against owner,
 * group, other and root, and the ioctls' owner-or-root and root-only checks.
 */
class PermissionsTest {
    private static final long INO = 12;
    private static final long OWNER = 1000, GROUP = 100;

    @AfterEach
    void backToRoot() {
        Caller.set(0, 0);
    }

    private static FileAttributes file(int mode, int flags) {
        return new FileAttributes(INO, mode, 1, OWNER, GROUP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, flags, 4096, 0);
    }

    private static void assertErrno(Errno expected, Executable check) {
        Ext4Exception e = assertThrows(Ext4Exception.class, check);
        assertEquals(expected, e.errno(), e.getMessage());
        assertTrue(e.getMessage().contains("inode " + INO), "the message names the inode: " + e.getMessage());
    }

    // ---- open ----

    @Test
    void opensForWriteIsAnyAccessModeButReadOnlyOrATruncate() {
        assertFalse(Permissions.opensForWrite(O_RDONLY));
        assertFalse(Permissions.opensForWrite(O_RDONLY | O_APPEND));
        assertTrue(Permissions.opensForWrite(O_WRONLY));
        assertTrue(Permissions.opensForWrite(O_RDWR));
        assertTrue(Permissions.opensForWrite(O_RDONLY | O_TRUNC));
    }

    /** Open flags against no flag, immutable, append-only and both; "ok" or the errno. */
    @ParameterizedTest(name = "{0} on {1}: {2}")
    @CsvSource({
            "O_RDONLY,          none,      ok",
            "O_WRONLY,          none,      ok",
            "O_RDWR|O_TRUNC,    none,      ok",
            "O_RDONLY,          immutable, ok",
            "O_WRONLY,          immutable, EPERM",
            "O_RDWR,            immutable, EPERM",
            "O_WRONLY|O_APPEND, immutable, EPERM",
            "O_RDONLY|O_TRUNC,  immutable, EPERM",
            "O_RDONLY,          append,    ok",
            "O_RDONLY|O_APPEND, append,    ok",
            "O_WRONLY|O_APPEND, append,    ok",
            "O_RDWR|O_APPEND,   append,    ok",
            "O_WRONLY,          append,    EPERM",
            "O_RDWR,            append,    EPERM",
            "O_WRONLY|O_APPEND|O_TRUNC, append, EPERM",
            "O_RDONLY|O_TRUNC,  append,    EPERM",
            "O_RDONLY,          both,      ok",
            "O_WRONLY|O_APPEND, both,      EPERM",
    })
    void openMatrix(String openFlags, String inodeFlags, String expected) throws Ext4Exception {
        int flags = 0;
        for (String f : openFlags.split("\\|")) {
            flags |= switch (f) {
                case "O_RDONLY" -> O_RDONLY;
                case "O_WRONLY" -> O_WRONLY;
                case "O_RDWR" -> O_RDWR;
                case "O_TRUNC" -> O_TRUNC;
                case "O_APPEND" -> O_APPEND;
                default -> throw new IllegalArgumentException(f);
            };
        }
        int iflags = switch (inodeFlags) {
            case "none" -> Inode.EXTENTS_FL;
            case "immutable" -> Inode.EXTENTS_FL | Inode.IMMUTABLE_FL;
            case "append" -> Inode.EXTENTS_FL | Inode.APPEND_FL;
            default -> Inode.EXTENTS_FL | Inode.IMMUTABLE_FL | Inode.APPEND_FL;
        };
        FileAttributes a = file(0100644, iflags);
        int f = flags;
        if (expected.equals("ok")) {
            Permissions.checkOpen(a, f, false);
        } else {
            assertErrno(Errno.valueOf(expected), () -> Permissions.checkOpen(a, f, false));
        }
    }

    @Test
    void aWriteOpenOnAReadOnlyFilesystemIsErofsBeforeTheInodeFlags() throws Ext4Exception {
        assertErrno(Errno.EROFS, () -> Permissions.checkOpen(file(0100644, 0), O_WRONLY, true));
        assertErrno(Errno.EROFS, () -> Permissions.checkOpen(file(0100644, Inode.IMMUTABLE_FL), O_RDONLY | O_TRUNC, true));
        Permissions.checkOpen(file(0100644, Inode.IMMUTABLE_FL), O_RDONLY, true);
    }

    // ---- access ----

    /**
     * Who asks (owner 1000:100, a member of group 100, another user, root) against a mode and a
     * mask: the owner's bits apply to the owner even when the group's or the others' would allow
     * more, as in generic_permission().
     */
    @ParameterizedTest(name = "{0} asks {2} of {1}: {3}")
    @CsvSource({
            "owner, 0100600, r,   ok",
            "owner, 0100600, rw,  ok",
            "owner, 0100600, x,   EACCES",
            "owner, 0100700, rwx, ok",
            "owner, 0100077, r,   EACCES",
            "owner, 0100400, w,   EACCES",
            "group, 0100640, r,   ok",
            "group, 0100640, w,   EACCES",
            "group, 0100650, x,   ok",
            "group, 0100607, r,   EACCES",
            "other, 0100644, r,   ok",
            "other, 0100644, w,   EACCES",
            "other, 0100770, r,   EACCES",
            "other, 0100001, x,   ok",
            "other, 0040755, rx,  ok",
            "other, 0040700, x,   EACCES",
            "other, 0100000, '',  ok",
            "root,  0100000, rw,  ok",
            "root,  0100000, x,   EACCES",
            "root,  0100010, x,   ok",
            "root,  0100001, rwx, ok",
            "root,  0040000, rwx, ok",
            "root,  0010600, x,   EACCES",
    })
    void accessMatrix(String who, String mode, String mask, String expected) throws Ext4Exception {
        switch (who) {
            case "owner" -> Caller.set(OWNER, 5000);
            case "group" -> Caller.set(2000, GROUP);
            case "other" -> Caller.set(2000, 5000);
            default -> Caller.set(0, 0);
        }
        int m = (mask.contains("r") ? R_OK : 0) | (mask.contains("w") ? W_OK : 0) | (mask.contains("x") ? X_OK : 0);
        FileAttributes a = file(Integer.parseInt(mode, 8), 0);
        if (expected.equals("ok")) {
            Permissions.checkAccess(a, m, false);
        } else {
            assertErrno(Errno.valueOf(expected), () -> Permissions.checkAccess(a, m, false));
        }
    }

    @Test
    void accessForWriteOnAReadOnlyFilesystemIsErofsEvenForRoot() throws Ext4Exception {
        assertErrno(Errno.EROFS, () -> Permissions.checkAccess(file(0100666, 0), W_OK, true));
        Permissions.checkAccess(file(0100666, 0), R_OK, true);
    }

    @Test
    void anAccessRefusalSaysWhoAndWhatBits() {
        Caller.set(2000, GROUP);
        Ext4Exception e = assertThrows(Ext4Exception.class, () -> Permissions.checkAccess(file(0100640, 0), R_OK | W_OK, false));
        assertEquals("inode 12: mode 0640 gives group (uid 2000, gid 100) no w", e.getMessage());
    }

    // ---- ioctl capabilities ----

    @Test
    void migrateIsForTheOwnerAndRootWithEacces() throws Ext4Exception {
        Permissions.checkMigrate(file(0100644, 0));
        Caller.set(OWNER, 1);
        Permissions.checkMigrate(file(0100644, 0));
        Caller.set(OWNER + 1, GROUP);
        assertErrno(Errno.EACCES, () -> Permissions.checkMigrate(file(0100644, 0)));
    }

    @Test
    void flagChangesAreForTheOwnerAndRootWithEperm() throws Ext4Exception {
        Permissions.checkSetFlags(file(0100644, 0), Inode.NOATIME_FL);
        Caller.set(OWNER, 1);
        Permissions.checkSetFlags(file(0100644, 0), Inode.NOATIME_FL);
        Caller.set(OWNER + 1, GROUP);
        assertErrno(Errno.EPERM, () -> Permissions.checkSetFlags(file(0100644, 0), Inode.NOATIME_FL));
    }

    @Test
    void immutableAndAppendOnlyChangesAreForRootOnly() throws Ext4Exception {
        Permissions.checkSetFlags(file(0100644, 0), Inode.IMMUTABLE_FL);
        Permissions.checkSetFlags(file(0100644, Inode.APPEND_FL), 0);
        Caller.set(OWNER, GROUP);
        assertErrno(Errno.EPERM, () -> Permissions.checkSetFlags(file(0100644, 0), Inode.IMMUTABLE_FL));
        assertErrno(Errno.EPERM, () -> Permissions.checkSetFlags(file(0100644, Inode.APPEND_FL), 0));
        // an immutable file's owner may still change the other flags, keeping immutable as it is
        Permissions.checkSetFlags(file(0100644, Inode.IMMUTABLE_FL), Inode.IMMUTABLE_FL | Inode.NODUMP_FL);
    }

    @Test
    void resizeIsForRootOnlyWithEperm() throws Ext4Exception {
        Permissions.checkResize(INO);
        Caller.set(OWNER, GROUP);
        assertErrno(Errno.EPERM, () -> Permissions.checkResize(INO));
    }
}
