package dev.ext4j.xattr;

import java.nio.charset.StandardCharsets;

/**
 * A decoded extended attribute: the on-disk name index and suffix, and the value. {@link #fullName}
 * gives the name the VFS shows ("user.foo", "system.posix_acl_access").
 */
public record Xattr(int nameIndex, byte[] suffix, byte[] value) {

    public String fullName() {
        return XattrNames.prefix(nameIndex) + new String(suffix, StandardCharsets.ISO_8859_1);
    }
}
