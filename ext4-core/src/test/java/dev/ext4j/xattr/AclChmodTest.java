package dev.ext4j.xattr;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.junit.jupiter.api.Test;

/** posix_acl_chmod(): chmod rewrites the owner, mask (or owning group) and other entries of an access ACL. */
class AclChmodTest {

    /** An ACL in the VFS xattr format from (tag, perm, id) triples. */
    private static byte[] acl(int... entries) {
        ByteBuffer b = ByteBuffer.allocate(4 + entries.length / 3 * 8).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(Acl.XATTR_ACL_VERSION);
        for (int i = 0; i < entries.length; i += 3) {
            b.putShort((short) entries[i]).putShort((short) entries[i + 1]).putInt(entries[i + 2]);
        }
        return b.array();
    }

    @Test
    void theMaskTakesTheGroupBitsAndNamedEntriesStay() {
        byte[] before = acl(Acl.ACL_USER_OBJ, 6, -1, Acl.ACL_USER, 6, 1000, Acl.ACL_GROUP_OBJ, 4, -1, Acl.ACL_MASK, 6, -1,
                Acl.ACL_OTHER, 4, -1);
        byte[] after = acl(Acl.ACL_USER_OBJ, 7, -1, Acl.ACL_USER, 6, 1000, Acl.ACL_GROUP_OBJ, 4, -1, Acl.ACL_MASK, 0, -1,
                Acl.ACL_OTHER, 1, -1);
        assertArrayEquals(after, Acl.chmod(before, 0701));
    }

    @Test
    void withoutAMaskTheOwningGroupTakesThem() {
        byte[] before = acl(Acl.ACL_USER_OBJ, 6, -1, Acl.ACL_GROUP_OBJ, 4, -1, Acl.ACL_OTHER, 4, -1);
        assertArrayEquals(acl(Acl.ACL_USER_OBJ, 4, -1, Acl.ACL_GROUP_OBJ, 2, -1, Acl.ACL_OTHER, 0, -1), Acl.chmod(before, 0100420));
    }
}
